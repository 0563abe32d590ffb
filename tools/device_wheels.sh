#!/usr/bin/env bash
# Prepare, on a machine with pip, what a GPU machine without a package registry lacks to run
# videnhance from source (see tools/gpu_check.sh):
#   .whl/    Python 3.12 wheels of fastai & co., PyAV and jsonschema (about 37 MB), at the versions
#            this checkout's .venv has, so both machines run the same library code;
#   .ffbin/  imageio-ffmpeg's static ffmpeg, xz-compressed (about 48 MB; the wheel is 68 MB);
#   .cvwhl/  OpenCV (headless), for the temporal model's DIS flow (about 58 MB).
# The folders are git-ignored (.git/info/exclude). Together they exceed the device tool's 64 MiB
# per call, so carry them in separate calls on the same warm machine: .whl with
# `bash tools/gpu_check.sh --install`, then .cvwhl with the same, then .ffbin with
# `bash tools/gpu_check.sh`. (Without .cvwhl, everything but `model.align: dis` runs.)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
for d in /.whl/ /.ffbin/ /.cvwhl/; do grep -qxF "$d" .git/info/exclude 2>/dev/null || echo "$d" >> .git/info/exclude; done
rm -rf .whl .cvwhl && mkdir -p .whl .ffbin .cvwhl  # one version of each package: two would stop the install
PKGS="fastai fastcore fasttransform fastprogress fastdownload plum-dispatch beartype av jsonschema
      jsonschema-specifications referencing rpds-py"
for p in $PKGS; do
  v=$($PY -m pip show "$p" 2>/dev/null | awk '/^Version:/{print $2}' || true)
  [ -n "$v" ] || { echo "$p is not installed in .venv (run make setup)" >&2; exit 1; }
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d .whl "$p==$v"
done
v=$($PY -m pip show opencv-python-headless | awk '/^Version:/{print $2}')
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .cvwhl "opencv-python-headless==$v"
ff=$($PY -c "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())")
[ -s .ffbin/ffmpeg.xz ] || xz -9 -T0 -c "$ff" > .ffbin/ffmpeg.xz
du -sh .whl .ffbin .cvwhl
