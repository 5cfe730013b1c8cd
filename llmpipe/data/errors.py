"""Errors raised by the data layer."""
from __future__ import annotations

from llmpipe.errors import UserError


class DataError(UserError, ValueError):
    """A dataset, template or data setting that cannot be used; the message names the key or dataset."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message
