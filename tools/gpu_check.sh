#!/usr/bin/env bash
# The CUDA checks and GPU benchmarks of docs/performance.md, in one go, on a GPU machine that has
# python3 with torch but no package registry (tools/device_wheels.sh prepares what it lacks).
#   bash tools/gpu_check.sh --install   install .whl/*.whl into /tmp/site, and stop
#   bash tools/gpu_check.sh [OUTDIR]    run: tests on CUDA, then bench model/infer/io/finetune
# Logs and bench.csv go to OUTDIR (default: $OUT where the device tool sets it, else gpu_check/).
set -uo pipefail
cd "$(dirname "$0")/.."
if ls .whl/*.whl >/dev/null 2>&1 && [ ! -d /tmp/site/fastai ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
[ "${1:-}" = "--install" ] && { echo "installed into /tmp/site"; exit 0; }
if [ -s .ffbin/ffmpeg.xz ] && [ ! -x /tmp/ffbin/ffmpeg ]; then
  mkdir -p /tmp/ffbin && xz -dc .ffbin/ffmpeg.xz > /tmp/ffbin/ffmpeg && chmod +x /tmp/ffbin/ffmpeg
fi
[ -x /tmp/ffbin/ffmpeg ] && export IMAGEIO_FFMPEG_EXE=/tmp/ffbin/ffmpeg
# imageio-ffmpeg itself is a few kB of Python: a stand-in that reads IMAGEIO_FFMPEG_EXE
if ! python3 -c "import imageio_ffmpeg" 2>/dev/null; then
  mkdir -p /tmp/shim/imageio_ffmpeg
  printf 'import os\n\ndef get_ffmpeg_exe():\n    return os.environ["IMAGEIO_FFMPEG_EXE"]\n' > /tmp/shim/imageio_ffmpeg/__init__.py
fi
export PYTHONPATH=src:/tmp/site:/tmp/shim PYTHONUNBUFFERED=1
out=${1:-${OUT:-gpu_check}}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" | tee -a "$out/gpu.txt"
python3 -m pytest -q -p no:cacheprovider tests/test_devices.py tests/test_colour.py tests/test_infer.py 2>&1 | tee "$out/pytest.log"
bench() { python3 -m videnhance.bench "$@" --csv "$out/bench.csv" 2>&1 | tee -a "$out/bench.log"; }
bench model --device cuda --compile both --seconds 10
bench infer --device cuda --size 960x540 --scale 4 --seconds 5
bench infer --device cuda --size 1280x720 --scale 2 --seconds 5
bench io --device cuda --size 1920x1080 --seconds 5 --repeat 2
bench finetune --device cuda --size 1280x720 --config config/benchmark_x4.yaml
bench finetune --device cuda --size 1280x720
bench memory --device cuda --size 960x540 --scale 4 --seconds 2
