"""videnhance: make videos sharper by fine-tuning a super-resolution model on each video."""

__version__ = "0.6.0"  # 0.6: SPAN/SRMD bases by default, scale 3, the base_model rule (0.5 results rerun)
