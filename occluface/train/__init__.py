"""Training: config, the resumable (optionally DDP) training loop, and atomic checkpoints.

`train(TrainConfig(...))` runs a job; `load_model(path)` gives back the trained backbone and head.
"""

from occluface.models.checkpoint import LoadedModel, load_checkpoint, load_model, save_checkpoint
from occluface.models.config import TrainConfig
from occluface.train.trainer import Trainer, train

__all__ = ["LoadedModel", "TrainConfig", "Trainer", "load_checkpoint", "load_model", "save_checkpoint", "train"]
