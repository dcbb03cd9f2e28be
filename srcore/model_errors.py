"""Errors of model weights: reading and checking them (``WeightsError``) and fetching them (``DownloadError``).

Their own module so that the weights reader and the download cache can both raise them without importing
each other.
"""

from __future__ import annotations


class WeightsError(ValueError):
    """A weights file that cannot be read, does not fit the model or is not the registered file; the message
    names the file."""


class DownloadError(RuntimeError):
    """A download that failed or did not match its expected hash."""
