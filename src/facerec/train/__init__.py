"""Training: the loop, optimizers, schedules, checkpoints and logs."""

from facerec.train.trainer import Trainer, train

__all__ = ["Trainer", "train"]
