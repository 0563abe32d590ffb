"""Measuring one workload: its peak memory (this process and every ffmpeg `io.spawn` starts while
it runs) and the CPU time of the timed part."""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable

from ..io import ffmpeg_exe, on_spawn, spawn


def rss_mb(maxrss: int) -> float:
    """ru_maxrss is KiB on Linux, bytes on macOS."""
    return maxrss / (1 << 20) if sys.platform == "darwin" else maxrss / 1024


def _vm_hwm_mb(pid: int | str = "self") -> float | None:
    """A live process's own peak RSS (VmHWM; Linux). None when gone, a zombie, or not Linux.

    Used instead of getrusage's ru_maxrss, which a child inherits from its parent: a process
    spawned (vfork + exec) by a 500 MB Python reports at least 500 MB there."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class PeakWatcher:
    """Samples the peak RSS (VmHWM, monotonic) of the processes it is given, every `interval` s,
    until they exit; `peaks` maps pid → MB. The last sample is at most `interval` old."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.peaks: dict[int, float] = {}
        self._live: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def add(self, pid: int) -> None:
        with self._lock:
            self._live.add(pid)
        self.sample()

    def sample(self) -> None:
        with self._lock:
            for pid in list(self._live):
                mb = _vm_hwm_mb(pid)
                if mb is None:
                    self._live.discard(pid)
                else:
                    self.peaks[pid] = max(self.peaks.get(pid, 0.0), mb)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> PeakWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def cpu_now() -> tuple[float, float]:
    """(this process's, its reaped children's) user + system CPU seconds."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime


def ffmpeg_timed(args: list[str]) -> tuple[float, float | None, float]:
    """Run ffmpeg with `args`; (wall seconds, its peak RSS in MB, its CPU seconds)."""
    cmd = [ffmpeg_exe(), "-nostdin", "-y", "-v", "error", *args]
    with tempfile.TemporaryFile() as err, PeakWatcher() as watcher:
        cpu0 = cpu_now()[1]
        start = time.perf_counter()
        proc = spawn(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        watcher.add(proc.pid)
        proc.wait()
        seconds = time.perf_counter() - start
        cpu = cpu_now()[1] - cpu0
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"ffmpeg {' '.join(args)} failed: {err.read().decode(errors='replace')[-600:]}")
    return seconds, watcher.peaks.get(proc.pid), cpu


class _Measurement:
    """The running measurement: its PeakWatcher and when its timed part started."""

    watcher: PeakWatcher | None = None
    cpu_start: tuple[float, float] | None = None


def timing_starts() -> None:
    """Called by a workload where its timed part begins: the ffmpeg runs before it (probing,
    holding frames in memory) are forgotten, and CPU time is counted from here."""
    _Measurement.cpu_start = cpu_now()
    if _Measurement.watcher is not None:
        _Measurement.watcher.sample()
        _Measurement.watcher.peaks.clear()


def run_work(work: Callable[[dict], dict], spec: dict) -> dict:
    """Run `work(spec)`, recording the peak RSS of every ffmpeg that `io.spawn` starts meanwhile
    (decoder and encoder run at the same time: their sum is an upper bound), this process's own
    peak and the CPU time after `timing_starts`."""
    _Measurement.cpu_start = None
    with PeakWatcher() as watcher, on_spawn(lambda proc: watcher.add(proc.pid)):
        _Measurement.watcher = watcher
        try:
            result = work(spec)
            watcher.sample()
        finally:
            _Measurement.watcher = None
    if _Measurement.cpu_start is not None:
        own, kids = cpu_now()
        result["py_cpu_s"], result["ffmpeg_cpu_s"] = own - _Measurement.cpu_start[0], kids - _Measurement.cpu_start[1]
    own = _vm_hwm_mb()
    result["py_rss_mb"] = own if own is not None else rss_mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    result["ffmpeg_rss_each"] = sorted(watcher.peaks.values())
    result["ffmpeg_rss_mb"] = sum(watcher.peaks.values())
    return result
