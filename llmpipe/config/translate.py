"""STUB: translations of dropped/renamed flags (filled in by the families work)."""
from __future__ import annotations


def translate(cfg, notes):
    return []
