"""Errors of the export stages. Their messages say what went wrong and what to do; the app prints them
without a traceback (they derive from llmpipe.errors.UserError)."""
from __future__ import annotations

from llmpipe.errors import UserError


class ExportError(UserError):
    """A model cannot be merged, quantized, written or verified (the message says why)."""


class PushError(UserError):
    """Publishing a finished export failed; the local export is complete and untouched."""
