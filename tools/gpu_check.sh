#!/usr/bin/env bash
# The CUDA checks and GPU benchmarks of docs/performance.md, in one go, on a GPU machine that has
# python3 with torch but no package registry (tools/device_wheels.sh prepares what it lacks).
#   bash tools/gpu_check.sh --install   install .whl/*.whl into /tmp/site, and stop
#   bash tools/gpu_check.sh [OUTDIR]    run: tests on CUDA, then bench model/infer/io/finetune/memory
# Logs and bench.csv go to OUTDIR (default: $OUT where the device tool sets it, else gpu_check/).
# Exits 1 if any step failed (each step still runs); the failed steps are listed at the end.
# All steps take several minutes: within the device tool's 600 s per call, pass --quick to
# skip the compiled model, the io benchmark and the benchmark-config fine-tune.
set -uo pipefail
cd "$(dirname "$0")/.."
if ls .whl/*.whl >/dev/null 2>&1 && [ ! -d /tmp/site/fastai ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
if ls .cvwhl/*.whl >/dev/null 2>&1 && [ ! -d /tmp/site/cv2 ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .cvwhl/*.whl || exit 1
fi
[ "${1:-}" = "--install" ] && { echo "installed into /tmp/site"; exit 0; }
quick=0
[ "${1:-}" = "--quick" ] && { quick=1; shift; }
if [ -s .ffbin/ffmpeg.xz ] && [ ! -x /tmp/ffbin/ffmpeg ]; then
  mkdir -p /tmp/ffbin && xz -dc .ffbin/ffmpeg.xz > /tmp/ffbin/ffmpeg && chmod +x /tmp/ffbin/ffmpeg
fi
[ -x /tmp/ffbin/ffmpeg ] && export IMAGEIO_FFMPEG_EXE=/tmp/ffbin/ffmpeg
export PYTHONPATH=src:/tmp/site:/tmp/shim PYTHONUNBUFFERED=1
# imageio-ffmpeg itself is a few kB of Python: a stand-in that reads IMAGEIO_FFMPEG_EXE
if ! python3 -c "import imageio_ffmpeg" 2>/dev/null && [ -n "${IMAGEIO_FFMPEG_EXE:-}" ]; then
  mkdir -p /tmp/shim/imageio_ffmpeg
  printf 'import os\n\n\ndef get_ffmpeg_exe():\n    return os.environ["IMAGEIO_FFMPEG_EXE"]\n' > /tmp/shim/imageio_ffmpeg/__init__.py
fi
if ! python3 -c "import fastai, av, jsonschema, imageio_ffmpeg, torch; assert torch.cuda.is_available()"; then
  echo "missing packages, ffmpeg or CUDA: run tools/device_wheels.sh here and carry .whl (then .ffbin); see its header" >&2
  exit 1
fi
out=${1:-${OUT:-gpu_check}}
mkdir -p "$out"
failed=()
step() {  # step NAME LOG COMMAND...: run, log, remember a failure
  local name=$1 log=$2; shift 2
  echo "== $name" | tee -a "$out/$log"
  "$@" 2>&1 | tee -a "$out/$log" || failed+=("$name")
}
step gpu gpu.txt nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
step tests pytest.log python3 -m pytest -q -p no:cacheprovider tests/test_devices.py tests/test_colour.py tests/test_infer.py
bench() { step "bench $*" bench.log python3 -m videnhance.bench "$@" --csv "$out/bench.csv"; }
if [ $quick = 1 ]; then bench model --device cuda --seconds 10; else bench model --device cuda --compile both --seconds 10; fi
bench infer --device cuda --size 960x540 --scale 4 --seconds 5
bench model --device cuda --model temporal --size 960x540 --scale 4 --seconds 10   # issue 15: 540p ×4, model only
bench infer --device cuda --model temporal --size 960x540 --scale 4 --seconds 5    # ... and end to end
bench infer --device cuda --size 1280x720 --scale 2 --seconds 5
bench finetune --device cuda --size 1280x720
bench memory --device cuda --size 960x540 --scale 4 --seconds 2
if [ $quick = 0 ]; then
  bench io --device cuda --size 1920x1080 --seconds 5 --repeat 2
  bench finetune --device cuda --size 1280x720 --config config/benchmark_x4.yaml
fi
if [ ${#failed[@]} -gt 0 ]; then printf 'FAILED: %s\n' "${failed[@]}" >&2; exit 1; fi
echo "all steps passed"
