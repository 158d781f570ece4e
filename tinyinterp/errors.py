"""Errors a user can cause. Each carries one line that names the file or argument and what to do."""


class TinyinterpError(Exception):
    """A problem with user input (a file, an argument, a model); the CLI prints it as one line."""


class RunDirError(TinyinterpError):
    """A run directory is missing, corrupt, or inconsistent."""


class DataError(TinyinterpError):
    """A corpus or data file is missing, empty, or unreadable."""


class ModelLoadError(TinyinterpError):
    """A model name or path could not be loaded."""
