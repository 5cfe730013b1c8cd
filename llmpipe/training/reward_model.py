"""Reward models: a causal LM's body with a scalar score head, in the standard transformers/PEFT layout
(``<Arch>ForSequenceClassification`` with ``num_labels=1``; for LoRA a ``SEQ_CLS`` adapter that saves the score
head through ``modules_to_save``), so a trained reward model reloads with the ordinary
``AutoModelForSequenceClassification`` (+ ``PeftModel``) calls, and :func:`load_reward_model` scores text.

The score head is put on the model the train stage already built (``llmpipe.models.trainable``: loading
options, quantization, the adapt stage's initial adapter), sharing its body: nothing is loaded twice.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Sequence

from llmpipe.errors import UserError


class RewardModelError(UserError):
    """A reward model cannot be loaded or used as configured (message says why and what to do)."""


def with_score_head(causal_lm, seed: int):
    """``causal_lm``'s body under a new ``<Arch>ForSequenceClassification`` (num_labels=1) whose score head is
    initialised from ``seed``; the body's modules (and their LoRA layers, quantization) are shared."""
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoModelForSequenceClassification

    config = copy.deepcopy(causal_lm.config)
    config.num_labels = 1
    config.architectures = None
    with init_empty_weights():
        seq = AutoModelForSequenceClassification.from_config(config)
    prefix = seq.base_model_prefix
    body = getattr(causal_lm, causal_lm.base_model_prefix)
    setattr(seq, prefix, body)
    head_name = "score" if hasattr(seq, "score") else "classifier"
    old = getattr(seq, head_name)
    param = next(body.parameters())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        head = torch.nn.Linear(old.in_features, 1, bias=old.bias is not None)
        torch.nn.init.normal_(head.weight, std=getattr(config, "initializer_range", 0.02))
        if head.bias is not None:
            torch.nn.init.zeros_(head.bias)
    dtype = param.dtype if param.dtype.is_floating_point else torch.float32
    setattr(seq, head_name, head.to(device=param.device, dtype=dtype))
    leftovers = [n for n, p in seq.named_parameters() if p.device.type == "meta"]
    if leftovers:
        raise RewardModelError(f"cannot put a score head on {type(causal_lm).__name__}: {leftovers[:3]} stay unset")
    seq.config.pad_token_id = getattr(causal_lm.config, "pad_token_id", None)
    return seq


def as_reward_model(model, seed: int):
    """The trainable reward model for the model the train stage built: LoRA (a PeftModelForCausalLM with the
    initial adapter) becomes a SEQ_CLS PeftModel with the same adapter weights and the score head in
    modules_to_save; freeze/full models get a trainable score head."""
    from peft import PeftModel, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    if not isinstance(model, PeftModel):
        seq = with_score_head(model, seed)
        head = seq.score if hasattr(seq, "score") else seq.classifier
        head.weight.requires_grad_(True)
        return seq
    config = copy.deepcopy(model.peft_config["default"])
    state = get_peft_model_state_dict(model)
    base = model.unload()
    seq = with_score_head(base, seed)
    init = config.init_lora_weights
    config.task_type, config.init_lora_weights = "SEQ_CLS", True   # weights are set below, not re-initialised
    config.modules_to_save = sorted(set(config.modules_to_save or []) | {"score"})
    peft_seq = get_peft_model(seq, config)
    full = get_peft_model_state_dict(peft_seq)
    missing = [k for k in state if k not in full]
    if missing:
        raise RewardModelError(f"the initial adapter does not fit the reward model ({missing[:2]} ...)")
    full.update(state)
    set_peft_model_state_dict(peft_seq, full)
    peft_seq.peft_config["default"].init_lora_weights = init
    return peft_seq


# --- loading a trained reward model and scoring text ----------------------------------------------------------

def _is_adapter(folder: Path) -> bool:
    return (folder / "adapter_config.json").is_file()


def locate(path: str | Path) -> Path:
    """The model or adapter folder inside a train stage's output (``adapter/`` or ``model/``), or ``path``."""
    p = Path(path).expanduser()
    for sub in ("adapter", "model"):
        if (p / sub).is_dir():
            return p / sub
    return p


def adapter_base(adapter_dir: Path) -> str:
    base = json.loads((adapter_dir / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base:
        raise RewardModelError(f"{adapter_dir}: the adapter does not record its base model (base_model_name_or_path)")
    return base


class RewardModel:
    """A sequence-classification reward model (+ its tokenizer) that scores text: ``score(texts)`` gives one
    float per text, ``score_chat(conversations)`` renders each conversation with the tokenizer's chat template
    first (the format the rm stage trains on)."""

    def __init__(self, model, tokenizer, batch_size: int = 16, max_length: int | None = None):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.batch_size, self.max_length = batch_size, max_length
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.model.config.pad_token_id = tokenizer.pad_token_id

    @property
    def device(self):
        return next(self.model.parameters()).device

    def score(self, texts: Sequence[str]) -> list[float]:
        import torch

        out: list[float] = []
        side, self.tokenizer.padding_side = self.tokenizer.padding_side, "right"
        try:
            for i in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(list(texts[i:i + self.batch_size]), return_tensors="pt", padding=True,
                                     add_special_tokens=False, truncation=self.max_length is not None,
                                     max_length=self.max_length).to(self.device)
                with torch.no_grad():
                    out += self.model(**enc).logits[:, 0].float().tolist()
        finally:
            self.tokenizer.padding_side = side
        return out

    def render(self, conversations: Sequence[list[dict]]) -> list[str]:
        return [self.tokenizer.apply_chat_template(list(c), tokenize=False) for c in conversations]

    def score_chat(self, conversations: Sequence[list[dict]]) -> list[float]:
        return self.score(self.render(conversations))


def load_reward_model(path: str | Path, *, base: str | None = None, dtype=None, quantization_bit: int | None = None,
                      adapters: Sequence[str] = (), device: str | None = None) -> RewardModel:
    """A trained reward model from ``path``: an rm train stage's output folder, a sequence-classification model
    folder (or hub id), or a SEQ_CLS adapter folder (its base from ``base`` or the adapter's record), with
    further ``adapters`` on top; quantized to ``quantization_bit`` (bitsandbytes) when given."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = locate(path)
    lora = folder if folder.is_dir() and _is_adapter(folder) else None
    source = base or (adapter_base(lora) if lora else str(path if not folder.exists() else folder))
    kw: dict[str, Any] = {"num_labels": 1, "dtype": dtype or torch.float32}
    if quantization_bit:
        from transformers import BitsAndBytesConfig

        from llmpipe.models import bnb_layout

        bnb_layout.install()
        kw["quantization_config"] = BitsAndBytesConfig(**{f"load_in_{quantization_bit}bit": True})
    try:
        model = AutoModelForSequenceClassification.from_pretrained(source, **kw)
    except (OSError, ValueError) as e:
        raise RewardModelError(f"cannot load the reward model {source}: {str(e).splitlines()[0]}") from None
    from peft import PeftModel

    for ad in ([str(lora)] if lora else []) + list(adapters):
        model = PeftModel.from_pretrained(model, ad)
        if not quantization_bit:
            model = model.merge_and_unload()
    tok_dir = folder if (folder / "tokenizer_config.json").is_file() else source
    tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
    if device and not quantization_bit:
        model = model.to(device)
    return RewardModel(model, tokenizer)
