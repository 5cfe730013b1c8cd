"""What pre-flight can learn about a tokenizer without loading it (no torch, no transformers): its tokens,
special tokens and whether it has a chat template, read from the tokenizer files of a local folder (or a
hub cache snapshot). Used to tell, before anything runs, whether
``data.template`` fits the model's tokenizer; the load stage checks again with the real tokenizer.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TokenizerFacts:
    source: str
    tokens: frozenset  # whole-token strings: added/special tokens and the vocabulary
    eos_token: str | None
    has_chat_template: bool


def _token_str(value) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def from_folder(folder: Path) -> TokenizerFacts | None:
    """Facts of the tokenizer saved in ``folder`` (None when it holds no tokenizer.json)."""
    tj, tc = folder / "tokenizer.json", folder / "tokenizer_config.json"
    if not tj.is_file():
        return None
    try:
        data = json.loads(tj.read_text(encoding="utf-8"))
        conf = json.loads(tc.read_text(encoding="utf-8")) if tc.is_file() else {}
    except (OSError, ValueError):
        return None
    tokens = {t.get("content") for t in data.get("added_tokens") or () if isinstance(t, dict)}
    vocab = (data.get("model") or {}).get("vocab") or {}
    tokens |= set(vocab) if isinstance(vocab, dict) else {v[0] for v in vocab if isinstance(v, list) and v}
    tokens |= {_token_str(v) for v in (conf.get("added_tokens_decoder") or {}).values()}
    template = conf.get("chat_template") or (folder / "chat_template.jinja").is_file() \
        or (folder / "chat_template.json").is_file()
    return TokenizerFacts(str(folder), frozenset(t for t in tokens if t), _token_str(conf.get("eos_token")),
                          bool(template))


def hub_snapshot(ref: str, cache_dirs: list[Path], revision: str | None = None) -> Path | None:
    folder = "models--" + ref.replace("/", "--")
    for d in cache_dirs:
        root = d / folder
        ref_file = root / "refs" / (revision or "main")
        try:
            if ref_file.is_file():
                snap = root / "snapshots" / ref_file.read_text().strip()
                if snap.is_dir():
                    return snap
            snaps = [p for p in (root / "snapshots").iterdir() if p.is_dir()] if (root / "snapshots").is_dir() else []
        except OSError:
            continue
        if len(snaps) == 1:
            return snaps[0]
    return None


def template_problem(facts: TokenizerFacts, name: str | None, markers: tuple, needs_eos: bool) -> str | None:
    """Why template ``name`` (with its control strings ``markers``) does not fit, or None."""
    if name is None:
        if not facts.has_chat_template:
            return f"the tokenizer of {facts.source} has no chat template of its own"
        return None
    missing = [m for m in markers if m not in facts.tokens]
    if missing:
        return (f"uses control strings that are not tokens of the tokenizer of {facts.source}: "
                f"{', '.join(map(repr, missing))}")
    if needs_eos and not facts.eos_token:
        return f"ends turns with eos_token, and the tokenizer of {facts.source} has none"
    return None
