"""videnhance: make videos sharper by fine-tuning a super-resolution model on each video."""

__version__ = "0.5.0"  # 0.5: typed settings, the temporal model, flicker in the scores (benchmark scores gain a column)
