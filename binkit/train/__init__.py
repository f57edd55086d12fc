"""Training: build models from specs and fit them."""

from binkit.train.build import build_model, load_checkpoint
from binkit.train.trainer import EpochMetrics, TrainResult, evaluate, fit

__all__ = ["build_model", "load_checkpoint", "fit", "evaluate", "TrainResult", "EpochMetrics"]
