"""Errors of the export stages. Their messages say what went wrong and what to do; the app prints them
without a traceback (llmpipe.app._CLEAN_ERRORS)."""
from __future__ import annotations


class ExportError(Exception):
    """A model cannot be merged, quantized, written or verified (the message says why)."""


class PushError(Exception):
    """Publishing a finished export failed; the local export is complete and untouched."""
