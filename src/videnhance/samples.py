"""Frame samples and pair files: which frames a video is trained and judged on, and the one .npz
each set is kept in (numpy only, so the steps that only read or write them need no torch).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .files import atomic_output


def sample_indices(n_frames: int, count: int) -> np.ndarray:
    """`count` frame indices spread evenly over the video (all frames when it is short)."""
    if count >= n_frames:
        return np.arange(n_frames)
    return np.unique(np.linspace(0, n_frames - 1, count).round().astype(int))


def split_train_val(indices: np.ndarray, val_fraction: float, segments: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Hold out whole stretches of the video, not every k-th frame: neighbouring frames are
    near-duplicates, and a validation frame next to a training frame would flatter overfitting.

    The sampled indices are cut into up to `segments` consecutive chunks and the last frames of
    each chunk are held out, so held-out stretches come from all over the video. Each stretch
    still borders one training frame (the next chunk's first): sampled frames are
    `n_frames / extract.frames` apart, so that neighbour is not a near-duplicate unless the clip
    is sampled densely.
    """
    n = len(indices)
    n_val = int(round(n * val_fraction))
    if val_fraction > 0:
        n_val = max(1, n_val)
    if n_val == 0 or n < 2:
        return indices, indices[:0]
    n_val = min(n_val, n - 1)
    chunks = np.array_split(np.arange(n), min(segments, n_val))
    per_chunk = np.array_split(np.arange(n_val), len(chunks))
    val_pos = np.concatenate([chunk[len(chunk) - len(take):] for chunk, take in zip(chunks, per_chunk, strict=True)])
    mask = np.zeros(n, bool)
    mask[val_pos] = True
    return indices[~mask], indices[mask]


def save_frames(path: str | Path, frames: np.ndarray, indices: np.ndarray, **extra: np.ndarray) -> None:
    """One .npz per sample set (not a file per frame)."""
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, frames=frames, indices=indices, **extra)


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def save_pairs(path: str | Path, lr: np.ndarray, hr: np.ndarray, is_val: np.ndarray, indices: np.ndarray,
               **extra: np.ndarray) -> None:
    """Training pairs in one .npz: `lr` inputs (or windows), `hr` targets, which are held out, the
    frame each came from, and `extra` arrays (`hr_window`: a multi-frame model's windows)."""
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, lr=lr, hr=hr, is_val=is_val, indices=indices, **extra)
