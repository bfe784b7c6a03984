"""Training: the parts of a run (builder), the loop (trainer) and the callbacks around it
(logs, progress, checkpoints, evaluation, export); optimizers, schedules, checkpoints, logs."""

from facerec.train.builder import RunParts, build_run
from facerec.train.callbacks import Callback, StepInfo, default_callbacks
from facerec.train.trainer import Trainer, train

__all__ = ["Callback", "RunParts", "StepInfo", "Trainer", "build_run", "default_callbacks", "train"]
