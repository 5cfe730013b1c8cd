"""The ``generate`` (and ``infer.use_kv_cache``) settings as one value, and how each backend receives them.

Semantics (the same for every backend):

* ``do_sample=false``: greedy decoding (beam search with ``num_beams > 1``); temperature/top_p/top_k are not
  passed at all. ``do_sample=true``: sampling with temperature, top_p and top_k (``top_k=0`` = off).
* new tokens stop at ``max_new_tokens`` or when prompt + generated reaches ``max_length``, whichever comes
  first; a prompt that already fills ``max_length`` is an error (:class:`PromptTooLong`).
* ``length_penalty`` only matters to beam search; ``repetition_penalty`` 1.0 is off.
* for prediction/evaluation ``data.eval_num_beams`` (when set) replaces ``num_beams``.

No torch import here; :func:`hf_generation_config` imports transformers only when called.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from llmpipe.errors import UserError


class PromptTooLong(UserError, ValueError):
    """The prompt leaves no room for generation under generate.max_length (or the engine's limit)."""


@dataclass(frozen=True)
class GenParams:
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    num_beams: int = 1
    max_length: int = 1024
    max_new_tokens: int = 1024
    repetition_penalty: float = 1.0
    length_penalty: float = 1.0
    skip_special_tokens: bool = True
    use_cache: bool = True
    stop: tuple[str, ...] = field(default_factory=tuple)   # extra stop strings (requests may add them)
    seed: int | None = None

    def new_tokens(self, prompt_len: int, engine_limit: int | None = None) -> int:
        """How many tokens may be generated after a prompt of ``prompt_len`` tokens."""
        total = min(self.max_length, engine_limit) if engine_limit else self.max_length
        room = total - prompt_len
        if room < 1:
            raise PromptTooLong(f"the prompt is {prompt_len} tokens and generate.max_length"
                                f"{' (or the engine limit)' if engine_limit else ''} is {total}: no room to generate; "
                                "shorten the conversation or raise generate.max_length")
        return min(self.max_new_tokens, room)

    def with_request(self, **changes: Any) -> "GenParams":
        """A copy with the request's own values (None = keep); temperature 0 means greedy."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if changes.get("temperature") == 0:
            changes.pop("temperature")
            changes["do_sample"] = False
        elif "temperature" in changes or "top_p" in changes:
            changes.setdefault("do_sample", True)
        if "stop" in changes:
            changes["stop"] = tuple(changes["stop"])
        return replace(self, **changes)


def from_config(obj: Any, *, for_eval: bool = False) -> GenParams:
    """GenParams from a typed config (``generate.*``, ``infer.use_kv_cache``; for prediction also
    ``data.eval_num_beams`` and ``train.seed``, so that sampled predictions are reproducible)."""
    g = obj.generate
    beams = g.num_beams
    if for_eval and getattr(obj.data, "eval_num_beams", None):
        beams = obj.data.eval_num_beams
    return GenParams(do_sample=bool(g.do_sample), temperature=float(g.temperature), top_p=float(g.top_p),
                     top_k=int(g.top_k), num_beams=int(beams), max_length=int(g.max_length),
                     max_new_tokens=int(g.max_new_tokens), repetition_penalty=float(g.repetition_penalty),
                     length_penalty=float(g.length_penalty), skip_special_tokens=bool(g.skip_special_tokens),
                     use_cache=bool(obj.infer.use_kv_cache),
                     seed=int(obj.train.seed) if for_eval else None)


def hf_kwargs(p: GenParams, prompt_len: int, *, eos_ids: list[int], pad_id: int | None) -> dict[str, Any]:
    """Keyword arguments of ``transformers.GenerationConfig`` for one (padded) prompt length."""
    kw: dict[str, Any] = dict(
        do_sample=p.do_sample, num_beams=p.num_beams, max_new_tokens=p.new_tokens(prompt_len),
        repetition_penalty=p.repetition_penalty, use_cache=p.use_cache, eos_token_id=list(eos_ids),
        pad_token_id=pad_id if pad_id is not None else (eos_ids[0] if eos_ids else None),
    )
    if p.do_sample:
        kw.update(temperature=p.temperature, top_p=p.top_p, top_k=p.top_k)
    else:   # greedy: no sampling knobs at all (a model's own generation_config must not sneak them in)
        kw.update(temperature=None, top_p=None, top_k=None)
    if p.num_beams > 1:
        kw["length_penalty"] = p.length_penalty
    if p.stop:
        kw["stop_strings"] = list(p.stop)
    return kw


def hf_generation_config(p: GenParams, prompt_len: int, *, eos_ids: list[int], pad_id: int | None):
    from transformers import GenerationConfig

    return GenerationConfig(**hf_kwargs(p, prompt_len, eos_ids=eos_ids, pad_id=pad_id))


def vllm_kwargs(p: GenParams, prompt_len: int, *, eos_ids: list[int], engine_limit: int | None) -> dict[str, Any]:
    """Keyword arguments of ``vllm.SamplingParams`` (vLLM does no beam search through llmpipe)."""
    kw: dict[str, Any] = dict(
        max_tokens=p.new_tokens(prompt_len, engine_limit), repetition_penalty=p.repetition_penalty,
        skip_special_tokens=p.skip_special_tokens, stop_token_ids=list(eos_ids), stop=list(p.stop) or None,
    )
    if p.do_sample:
        kw.update(temperature=p.temperature, top_p=p.top_p, top_k=p.top_k if p.top_k > 0 else -1, seed=p.seed)
    else:
        kw.update(temperature=0.0, top_p=1.0, top_k=-1)
    return kw
