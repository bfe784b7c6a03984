"""Exceptions that carry a message meant for the user (the CLI prints them without a traceback)."""


class FacerecError(Exception):
    """Base class: something the user can fix (bad config, bad data, bad path)."""


class ConfigError(FacerecError):
    """Unknown or ill-typed configuration key, or an invalid value."""


class DataError(FacerecError):
    """Missing, empty, corrupt or unsuitable data."""


class TrainingError(FacerecError):
    """Training could not go on (non-finite loss, incompatible checkpoint, ...)."""
