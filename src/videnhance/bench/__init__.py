"""`videnhance bench io|model|infer|finetune|memory`: how fast this machine decodes, runs the model,
encodes and enhances whole videos, measured against ffmpeg doing the same work on its own.

  io      ffmpeg alone (decode to null, file→file transcode with our encoder settings) next to our
          decode into numpy batches, our encode from numpy, and our passthrough (decode → identity
          → encode), also through the inference path with each transport (rgb24, yuv420p) on
          --device. Ends with `passthrough_ratio: R` (our passthrough ÷ ffmpeg transcode, frames/s).
  model   model-only frames/s of the default network (SRResNet 64 channels × 16 blocks, random
          weights), input in channels_last as `run_model` gives it: fp32 on CPU (with the
          allocator tuning enhance_video uses); bf16 autocast + channels_last weights on CUDA. Time-bounded: runs until
          --seconds have passed, at least one batch.
  infer   end-to-end `enhance_video` frames/s next to each stage alone (model, our decoder at the
          input size, our encoder at the output size); ends with `infer_ratio: R` (end-to-end ÷
          the slowest stage).
  finetune  a video's fine-tuning as the pipeline runs it (extract → degrade → fine_tune, the
          config's budget): seconds and iterations/s; ends with `it_per_s: R`.
  memory  `enhance_video` on clips of N and 10·N seconds, each in a fresh process; ends with
          `memory_ratio: R` (peak RSS of the long run ÷ the short one; the target is < 1.2).

Without --input, a test clip (ffmpeg lavfi testsrc2, x264 crf 18) is made in a temporary folder.
Every measurement of our own code runs in a fresh Python process, so its peak RSS is its own.
`peak_rss_mb` = that process's peak + the peaks of the ffmpeg processes it ran during the timed
part (decoder and encoder run at the same time, so this is an upper bound of their sum). Peaks
are VmHWM from /proc on Linux, not getrusage's ru_maxrss: a child inherits ru_maxrss from the
process that spawned it (vfork + exec), so a worker started from a Python that imported torch
would report ≥ 500 MB before doing anything. Elsewhere ru_maxrss is the fallback. The table
also gives CPU milliseconds per frame (all processes, user + system): on a machine shared with
other jobs, wall-clock frames/s swing with the load, CPU time per frame much less.
--csv appends the rows (header written once) with the columns in `COLUMNS`.

The package in layers, each importing only those above it: `table` (rows, the printed table, the
CSV), `sampling` (peak memory and CPU time of a measurement and the ffmpeg processes it starts),
`workloads` (what one measurement runs, in a fresh process), `suites` (the benchmarks, each a
workload next to what it is compared with), `cli` (the command line).
"""

from .cli import main, register, run_bench
from .suites import bench_finetune, bench_infer, bench_io, bench_memory, bench_model, measure
from .table import COLUMNS, Row, print_table, write_csv
from .workloads import MODELS, build_bench_model, make_test_clip, passthrough

__all__ = ["COLUMNS", "MODELS", "Row", "bench_finetune", "bench_infer", "bench_io", "bench_memory", "bench_model",
           "build_bench_model", "main", "make_test_clip", "measure", "passthrough", "print_table", "register",
           "run_bench", "write_csv"]
