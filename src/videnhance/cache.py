"""Base models trained once per machine: `videnhance enhance` keeps the base model it pretrains in
a user cache folder, keyed by everything the base depends on, so the next video (or the next run
on the same video) starts from it instead of pretraining again.

The folder is `$VIDENHANCE_CACHE`, else `$XDG_CACHE_HOME/videnhance`, else `~/.cache/videnhance`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

from . import __version__
from .settings import Settings

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    if os.environ.get("VIDENHANCE_CACHE"):
        return Path(os.environ["VIDENHANCE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "videnhance"


def base_model_path(settings: Settings) -> Path:
    """Where the base model of these settings lives: its name says the arch and scale, its hash
    covers the scale, the model, pretraining and degradation settings and the library version."""
    depends = {k: v for k, v in settings.as_dict().items() if k in ("scale", "model", "pretrain", "degrade")}
    key = hashlib.sha256(json.dumps([depends, __version__], sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / "base" / f"{settings.model.arch}_x{settings.scale}_{key}.pt"


def pretrain_seconds(settings: Settings) -> float:
    """An estimate of the whole pretraining from timed steps: `pretrain.steps` of the network (of
    its single-frame part, for a multi-frame one) and, for a multi-frame one, `temporal_steps`."""
    from .archs import arch_kwargs, frames_in
    from .models import build_model

    model = build_model(settings.model.arch, settings.scale, **arch_kwargs(settings.model))
    window = frames_in(settings.model)
    if window == 1:
        return settings.pretrain.steps * seconds_per_step(settings, model)
    return (settings.pretrain.steps * seconds_per_step(settings, model.single)
            + settings.pretrain.temporal_steps * seconds_per_step(settings, model, window))


def seconds_per_step(settings: Settings, model=None, frames_in: int = 1, repeats: int = 3) -> float:
    """Wall seconds of one pretraining step of `model` (default: the configured network) on the
    configured device (the fastest of a few timed steps of random data, windows of `frames_in`
    frames for a multi-frame model; the first, which warms up, is not counted)."""
    import torch
    import torch.nn.functional as F

    from .archs import arch_kwargs
    from .infer import pick_device
    from .models import build_model

    dev = pick_device(settings.device)
    cfg, scale = settings.pretrain, settings.scale
    if model is None:
        model = build_model(settings.model.arch, scale, **arch_kwargs(settings.model))
    model = model.to(dev)
    opt = torch.optim.Adam(model.parameters())
    window = (frames_in,) if frames_in > 1 else ()
    x = torch.rand(cfg.batch_size, *window, 3, cfg.patch, cfg.patch, device=dev)
    y = torch.rand(cfg.batch_size, 3, cfg.patch * scale, cfg.patch * scale, device=dev)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        F.l1_loss(model(x), y).backward()
        opt.step()
        opt.zero_grad()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        times.append(time.perf_counter() - start)
    return min(times[1:])


def cached_base_model(settings: Settings, rebuild: bool = False) -> Path:
    """The base model file for `settings`, pretrained now only if the cache has none (or `rebuild`)."""
    from .infer import pick_device
    from .pipeline import pretrain

    path = base_model_path(settings)
    if path.exists() and not rebuild:
        log.info("base model from the cache: %s", path)
        return path
    steps = settings.pretrain.steps
    estimate = pretrain_seconds(settings)
    log.info("pretraining a ×%d base model (%s, %d steps on %s): about %s, from a timed step. It is kept in %s "
             "for later runs (--rebuild-base trains it again; --checkpoint uses your own).", settings.scale,
             settings.model.arch, steps, pick_device(settings.device), _duration(estimate), path)
    pretrain(model=path, history=path.with_suffix(".history.csv"), settings=settings)
    return path


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
