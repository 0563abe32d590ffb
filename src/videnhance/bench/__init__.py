"""Benchmarks: how fast this machine decodes, runs the model, fine-tunes and enhances whole videos,
measured against ffmpeg doing the same work on its own (`videnhance bench --help`, docs/performance.md).

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
