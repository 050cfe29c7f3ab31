"""Exception types for problems a user can fix.

The CLI turns every :class:`DeltatuneError` into one message and a non-zero exit, without a
traceback: the message has to say what is wrong and where (column, label, file, key).
"""


class DeltatuneError(Exception):
    """Base class of errors caused by inputs or settings rather than by a bug."""


class InputDataError(DeltatuneError):
    """The AnnData does not hold what the configuration says it holds."""


class SettingsError(DeltatuneError):
    """A setting is unknown, missing or out of range."""


class CheckpointError(DeltatuneError):
    """A model checkpoint is missing, unreadable or does not match the data."""


class NonFiniteLossError(DeltatuneError):
    """Training produced a NaN or infinite loss; the last good checkpoint is kept."""


class OutputError(DeltatuneError):
    """An output cannot be written (a read-only or full file system, no permission)."""
