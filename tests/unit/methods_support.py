"""Shared by the model-level method tests: a micro Llama and tokenizer built in the test (no built-in model
needed), a config composer, and small training/inspection helpers."""
from __future__ import annotations

import pytest
import torch

MICRO = dict(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=True)
WORDS = ["[UNK]", "[PAD]"] + [f"w{i}" for i in range(94)]


def cfg_of(*overrides: str):
    from llmpipe.config.compose import compose
    from llmpipe.config.typed import typed

    return typed(compose(["model=tiny", "data.dataset=demo_sft", *overrides]))


def micro_model(seed: int = 0, dtype=None, **over):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**{**MICRO, **over}))
    return model.to(dtype) if dtype else model


def micro_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("micro")
    micro_model().save_pretrained(path)
    micro_tokenizer().save_pretrained(path)
    return str(path)


X = torch.randint(2, 96, (2, 12), generator=torch.Generator().manual_seed(1))


def logits(model, x=X):
    model.eval()
    with torch.no_grad():
        return model(input_ids=x).logits.float()


def train_steps(model, steps: int = 3, lr: float = 1e-2):
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    for _ in range(steps):
        loss = model(input_ids=X, labels=X).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    return model


def trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --- LoRA ----------------------------------------------------------------------------------------------------
