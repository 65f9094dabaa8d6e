"""Errors a user can cause. Each carries a message written for the user."""


class DisComKDError(Exception):
    """Base class: the message says what went wrong and what to do."""


class DataError(DisComKDError):
    """A modality folder or a data file cannot be used."""


class ConfigError(DisComKDError):
    """A training or prediction setting is invalid."""


class BundleError(DisComKDError):
    """A model bundle is corrupt, truncated, foreign or tampered with."""


class PredictionError(DisComKDError):
    """A file cannot be routed to a modality or predicted."""


class AmbiguousModalityError(PredictionError):
    """A file fits several modalities; ``candidates`` names them so the user can choose."""

    def __init__(self, message: str, candidates: list[str]) -> None:
        super().__init__(message)
        self.candidates = list(candidates)


class RunFolderError(DisComKDError):
    """A run folder cannot be used: it holds another run, a training is writing to it, or it is not a folder."""


class OutputPathError(DisComKDError):
    """A file or folder named for output cannot be used: it is a folder, under a file, not writable,
    one of the command's own inputs, or an existing file the user did not ask to replace."""


class OutputExistsError(OutputPathError):
    """The output file exists and replacing it was not asked for (``--force``, or the app's confirmation)."""


class StorageError(DisComKDError, OSError):
    """A file cannot be written: the disk is full, the folder is read-only, or permission is denied.

    Also an OSError, so callers that already handled failed writes as OSError keep doing so."""


class TrainingError(DisComKDError):
    """Training cannot start or continue (for example out of memory)."""


class Cancelled(Exception):
    """A stop was requested while work was in progress (not an error)."""
