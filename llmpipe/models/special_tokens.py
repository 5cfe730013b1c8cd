"""New tokens: added to the tokenizer when it is loaded (model.add_tokens, model.add_special_tokens,
model.new_special_tokens_config), and the embedding matrices resized to match (model.resize_vocab) with the new
rows initialised as model.init_special_tokens says:

- noise_init: the mean of the existing embeddings plus small Gaussian noise;
- desc_init: the mean embedding of the tokens of the token's description (new_special_tokens_config);
- desc_init_w_noise: desc_init plus the same small noise.

The noise is drawn from a generator seeded with train.seed, so every stage that rebuilds the base model
(adapter creation, training, merging) gets byte-identical new rows.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from llmpipe.errors import UserError

PAD_MULTIPLE = 64     # resized vocabularies are padded to a multiple of 64 rows (faster matmuls on GPUs)
NOISE_SCALE = 0.02    # noise std as a fraction of the existing embeddings' std


class TokenSetupError(UserError):
    """The tokenizer/embedding changes cannot be applied (message says why and what to do)."""


def descriptions(model_cfg: Any) -> dict[str, str]:
    """{token: description} from model.new_special_tokens_config (empty when unset)."""
    path = model_cfg.new_special_tokens_config
    if not path:
        return {}
    import yaml

    data = yaml.safe_load(Path(str(path)).expanduser().read_text())
    if not isinstance(data, dict) or not data or not all(isinstance(k, str) for k in data):
        got = "an empty file" if not data else f"a {type(data).__name__}"
        raise TokenSetupError(f"model.new_special_tokens_config={path}: must be a YAML mapping "
                              f"'<token>: description', got {got}")
    return {k: "" if v is None else str(v) for k, v in data.items()}


def requested(model_cfg: Any) -> tuple[list[str], list[str]]:
    """(ordinary tokens, special tokens) the configuration asks to add."""
    special = list(descriptions(model_cfg)) or list(model_cfg.add_special_tokens)
    return list(model_cfg.add_tokens), special


def add_to_tokenizer(tokenizer, model_cfg: Any) -> int:
    """Add the requested tokens (those already known are skipped); returns how many were added."""
    plain, special = requested(model_cfg)
    added = 0
    if plain:
        added += tokenizer.add_tokens(plain, special_tokens=False)
    if special:
        added += tokenizer.add_special_tokens({"extra_special_tokens": special}, replace_extra_special_tokens=False)
    return added


def _init_rows(weight, old_rows: int, desc_ids: dict[int, list[int]], method: str, gen) -> None:
    import torch

    old = weight[:old_rows].float()
    mean, std = old.mean(0), old.std().item()
    for row in range(old_rows, weight.shape[0]):
        value = mean.clone()
        ids = [i for i in desc_ids.get(row, []) if i < old_rows]
        if method in ("desc_init", "desc_init_w_noise") and ids:
            value = old[ids].mean(0)
        if method != "desc_init" or not ids:
            noise = torch.randn(value.shape, generator=gen) * std * NOISE_SCALE
            value = value + noise.to(value.device)
        weight[row] = value.to(weight.dtype)


def resize_embeddings(model, tokenizer, cfg: Any, log=print) -> dict[str, int] | None:
    """Grow the input (and untied output) embeddings to the tokenizer's size when model.resize_vocab is set.

    Raises TokenSetupError when the tokenizer has tokens the embeddings cannot hold and resizing is off."""
    import torch

    emb = model.get_input_embeddings()
    old_rows, needed = emb.weight.shape[0], len(tokenizer)
    if needed <= old_rows:
        return None
    if not cfg.model.resize_vocab:
        raise TokenSetupError(
            f"the tokenizer has {needed} tokens but the model's embeddings only {old_rows} rows (tokens were added: "
            f"model.add_tokens / add_special_tokens / new_special_tokens_config); set model.resize_vocab=true")
    rows = -(-needed // PAD_MULTIPLE) * PAD_MULTIPLE
    model.resize_token_embeddings(rows, mean_resizing=False)
    desc = descriptions(cfg.model)
    desc_ids = {}
    for token, text in desc.items():
        tid = tokenizer.convert_tokens_to_ids(token)
        if text:
            desc_ids[tid] = tokenizer(text, add_special_tokens=False)["input_ids"]
    gen = torch.Generator().manual_seed(int(cfg.train.seed))
    method = cfg.model.init_special_tokens
    with torch.no_grad():
        _init_rows(model.get_input_embeddings().weight, old_rows, desc_ids, method, gen)
        out = model.get_output_embeddings()
        if out is not None and out.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr():
            _init_rows(out.weight, old_rows, desc_ids, method, gen)
    log(f"embeddings resized {old_rows} -> {rows} rows for {needed} tokens ({method})")
    return {"old_rows": old_rows, "new_rows": rows, "tokens": needed}
