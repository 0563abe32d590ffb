"""videnhance: make videos sharper by fine-tuning a super-resolution model on each video."""

__version__ = "0.4.0"  # 0.4: the guard decides on near-scale held-out pairs (results change)
