"""videnhance: make videos sharper by fine-tuning a super-resolution model on each video."""

__version__ = "0.3.0"
