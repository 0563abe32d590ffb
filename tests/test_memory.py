"""The memory budget: every model call sized so that no frame size exceeds it (`memory.fit`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from videnhance import memory
from videnhance.infer import run_model
from videnhance.models import SRResNet


@pytest.fixture(autouse=True)
def _auto_budget():
    yield
    memory.set_budget(0)


def test_fit_keeps_the_batch_then_fewer_frames_then_tiles():
    model = SRResNet(scale=2, channels=16, blocks=1).eval()
    per_px = memory.bytes_per_pixel(model, 2)
    assert per_px > 4 * 16 * 4  # at least the 16-channel activations, four times over
    frame = per_px * 100 * 100
    memory.set_budget(int(8 * frame / 2**20) + 1)
    assert memory.fit(model, 8, 100, 100, 2, 4, 16, "cpu") == (4, 0)  # 4 frames fit
    memory.set_budget(int(2.5 * frame / 2**20))
    assert memory.fit(model, 8, 100, 100, 2, 4, 16, "cpu") == (2, 0)
    memory.set_budget(1)  # 1 MiB: not even one 1000×1000 frame
    batch, tile = memory.fit(model, 8, 1000, 1000, 2, 4, 16, "cpu")
    assert batch == 1 and 48 <= tile < 1000 and (tile + 32) ** 2 * per_px <= 2**20 + 8 * 1000 * per_px


def test_bigger_networks_need_more_per_pixel_and_the_estimate_is_cached():
    small, big = SRResNet(2, 8, 1).eval(), SRResNet(2, 64, 2).eval()
    assert memory.bytes_per_pixel(big, 2) > 4 * memory.bytes_per_pixel(small, 2)
    assert memory.bytes_per_pixel(None, 4) == 2 * (12 + 12 * 16)
    memory._per_pixel[small] = 123.0
    assert memory.bytes_per_pixel(small, 2) == 123.0


def test_the_auto_budget_is_what_the_machine_has_left():
    memory.set_budget(0)
    auto = memory.budget("cpu")
    available = memory._mem_available()
    assert 0 < auto <= (available or auto * 2) * memory.CPU_FRACTION + 1
    memory.set_budget(300)
    assert memory.budget("cpu") == 300 * 2**20


def test_a_budgeted_call_is_tiled_and_equals_the_whole_frame():
    model = SRResNet(scale=2, channels=8, blocks=1).eval()
    frames = np.random.default_rng(0).integers(0, 255, (2, 96, 80, 3), np.uint8)
    whole = run_model(model, frames)
    memory.set_budget(1)
    assert memory.fit(model, 2, 96, 80, 2, 4, 16, "cpu")[1] > 0  # the budget tiles this call
    with torch.no_grad():
        assert np.abs(run_model(model, frames).astype(int) - whole.astype(int)).max() <= 1


PEAK = """
import sys
import numpy as np, torch
from videnhance.infer import run_model
from videnhance.memory import set_budget
from videnhance.models import SRResNet

def vmhwm():
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))

torch.manual_seed(0); torch.set_num_threads(1)
model = SRResNet(scale=2, channels=32, blocks=2).eval()
frames = np.random.default_rng(0).integers(0, 255, (1, 1024, 1024, 3), np.uint8)
set_budget(int(sys.argv[1]))
run_model(model, frames[:, :64, :64])  # allocator and probe warmed up
open("/proc/self/clear_refs", "w").write("5")  # peak RSS := current RSS
start = vmhwm()
out = run_model(model, frames)
np.save(sys.argv[2], out)
print((vmhwm() - start) / 2**20)
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's peak-RSS reset")
def test_a_large_frame_stays_under_a_small_budget(tmp_path):
    """A 1024×1024 frame ×2 through a 32-channel network, in fresh processes: with the machine's
    budget it runs whole; with 64 MiB it is tiled, its peak is a fraction, the output identical.
    What stays outside the budget is the frame itself (input and output, about 75 MiB here)."""

    def peak(budget_mb: int) -> tuple[float, np.ndarray]:
        out = tmp_path / f"{budget_mb}.npy"
        proc = subprocess.run([sys.executable, "-c", PEAK, str(budget_mb), str(out)], capture_output=True,
                              text=True, check=True)
        return float(proc.stdout.split()[-1]), np.load(out)

    free_peak, free_out = peak(0)
    small_peak, small_out = peak(64)
    frame_mib = (1024 * 1024 * 12 + 2048 * 2048 * 15) / 2**20
    assert small_peak < (64 + frame_mib) * 1.5 < free_peak / 3, (small_peak, free_peak)
    assert np.array_equal(small_out, free_out)
