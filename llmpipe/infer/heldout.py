"""The held-out examples as conversations with their reference answers, in the order of the load stage's
eval split: ``data.eval_dataset`` (concatenated), or the ``data.val_size`` split of ``data.dataset`` (mixed
and split as the load stage does), read through the data pipeline (registry -> rows -> sampling -> sft
conversion). Rows the supervised tokenizer rejects (nothing trainable within ``cutoff_len``) are dropped,
as the load stage drops them, so that without packing row i here is row i of ``eval/``. Rows with images keep
their image references (paths under ``data.media_dir``, dicts, bytes or data URLs) for a vision-language model."""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from llmpipe.data.errors import DataError


@dataclass
class Example:
    messages: list[dict]        # the conversation up to (not including) the answer
    system: str | None
    tools: str | None
    reference: str              # the answer in the data
    images: list = field(default_factory=list)   # the row's image references, one per <image> in the messages


def _kept(name: str, tokenizer, opts, proc: dict, split: str, mm=None) -> list[dict]:
    """sft examples of dataset ``name`` that the load stage keeps, in its order."""
    from llmpipe.data.loader import convert_dataset, resolve_spec
    from llmpipe.data.processors import tokenize_batch

    examples, _ = convert_dataset(resolve_spec(name, opts), opts, split, mm)
    cols = ("messages", "system", "tools")
    batch = {k: [ex.get(k) for ex in examples] for k in cols} | {"_row": list(range(len(examples)))}
    bad = tokenize_batch(batch, tokenizer=tokenizer, kind="sft", **proc)["_bad"]
    return [ex for ex, b in zip(examples, bad) if not b]


def _images(ex: dict) -> list:
    """The image references of an example, JSON-safe (bytes as base64 under ``{"b64": ...}``)."""
    import base64

    out = []
    for r in (ex.get("media") or {}).get("images", []):
        if isinstance(r, dict) and r.get("bytes"):
            r = r["bytes"]
        out.append({"b64": base64.b64encode(bytes(r)).decode()} if isinstance(r, (bytes, bytearray)) else r)
    return out


def _unjson(ref):
    import base64

    return base64.b64decode(ref["b64"]) if isinstance(ref, dict) and "b64" in ref else ref


def heldout_examples(cfg: Any, tokenizer, mm=None) -> list[Example]:
    """The held-out split as :class:`Example` rows (puts the run's chat template on ``tokenizer``); ``mm``: a
    vision-language model's image tokenization (llmpipe.data.mm_plugins.ImageTokens), without which rows with
    images are refused."""
    import datasets

    from llmpipe.data.loader import concat, mix, prepare_tokenizer, val_count
    from llmpipe.data.options import DataOptions

    opts = replace(DataOptions.from_cfg(cfg), stage="sft")
    if not opts.eval_dataset and not opts.val_size:
        raise DataError("prediction needs held-out data: set data.eval_dataset or data.val_size")
    proc = prepare_tokenizer(tokenizer, opts)
    split = "eval" if opts.eval_dataset else "train"
    parts = []
    for name in opts.eval_dataset or opts.dataset:
        rows = [{"ex": json.dumps({k: ex.get(k) for k in ("messages", "system", "tools")}
                                  | {"images": _images(ex)}, ensure_ascii=False)}
                for ex in _kept(name, tokenizer, opts, proc, split, mm)]
        if not rows:
            raise DataError(f"dataset {name!r} has no usable held-out rows")
        parts.append(datasets.Dataset.from_list(rows))
    if opts.eval_dataset:
        held = concat(parts)
    else:   # the same split as the load stage: same length, same seed -> same rows
        train = mix(parts, opts)
        held = train.train_test_split(test_size=val_count(opts.val_size, len(train)), seed=opts.seed,
                                      shuffle=True)["test"]
    out = []
    for row in held:
        ex = json.loads(row["ex"])
        msgs = ex["messages"]
        if not msgs or msgs[-1].get("role") != "assistant":
            continue
        out.append(Example(msgs[:-1], ex["system"], ex["tools"], str(msgs[-1].get("content") or ""),
                           [_unjson(r) for r in ex["images"]]))
    return out


def prompt_encoder(obj, prompter, vision, examples):
    """Example -> prompt ids: with the example's images (opened under data.media_dir) for a vision-language
    model (llmpipe.infer.mm_request), else the text alone."""
    if not any(ex.images for ex in examples):
        return lambda ex: prompter.encode(ex.messages, ex.system, ex.tools)
    from llmpipe.data.media import MediaError
    from llmpipe.data.mm_media import open_image
    from llmpipe.data.options import DataOptions

    root = DataOptions.from_cfg(obj).media_root

    def encode(ex):
        try:
            images = [open_image(r, root) for r in ex.images]
        except MediaError as e:
            raise DataError(f"a held-out row's image cannot be used: {e}") from None
        return vision.encode(prompter, ex.messages, ex.system, ex.tools, images)
    return encode


def cut_prompt(ids, cutoff: int, row: int):
    """The last ``cutoff`` tokens of a prompt; a prompt with images is never cut (it would cut into them)."""
    from llmpipe.infer.mm_request import images_of

    if not images_of(ids):
        return ids[-cutoff:]
    raise DataError(f"held-out row {row}: its prompt with images is {len(ids)} tokens, more than "
                    f"data.cutoff_len={cutoff}, and cutting it would cut into its images; raise data.cutoff_len or "
                    "lower vision.image_max_pixels")
