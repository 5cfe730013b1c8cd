"""The faster paths of multimodal SFT on image rows, each exact: the built-in tiny VLM (builtin:tiny_vl, Qwen2-VL
layout), built as the train stage builds it (LoRA on the language model, tower and merger frozen, reentrant gradient
checkpointing: the matched settings of bench/vlm.py), on the bundled image rows under the qwen2_vl template, trained
for a few AdamW steps by the plain path and by the fast one from the same initial weights: the per-step losses agree
(to 1e-6, or bit for bit), the loss falls, and the train log says which path runs. The paths: the label-only LM head
(llmpipe.training.lm_head), a frozen tower without autograd (llmpipe.models.frozen_towers), the M-RoPE position ids
computed by the collator (llmpipe.training.mrope). The other image families' tiny models are not built here (cost);
their exactness was measured once and is in bench/findings_vlm.md."""
from __future__ import annotations

import copy

import pytest
import test_methods

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.slow
store = test_methods.store   # a fixture: a store that shares the built-in models of the session

STEPS = 3


@pytest.fixture(scope="module")
def tiny_vl(tmp_path_factory, store):
    """(cfg, model, rows, collator, build log) of builtin:tiny_vl on 8 image rows, as the train stage sets them up."""
    from transformers import AutoTokenizer

    from llmpipe.config.compose import compose
    from llmpipe.config.typed import typed
    from llmpipe.data import mm_plugins
    from llmpipe.data.loader import build_datasets
    from llmpipe.data.options import DataOptions
    from llmpipe.models.builtin import ensure_builtin
    from llmpipe.models.trainable import build
    from llmpipe.models.vision import publish_processor
    from llmpipe.pipeline.preflight import validate
    from llmpipe.resources import folder
    from llmpipe.training.collators import collator_for

    validated, problems = validate(compose([
        "+recipe=vlm_demo", "data.template=qwen2_vl", "lora.rank=8", "lora.alpha=16", "lora.dropout=0.0",
        "vision.freeze_multi_modal_projector=true", "model.disable_gradient_checkpointing=false",
        "model.use_reentrant_gc=true"]))
    assert not problems, [p.render() for p in problems]
    cfg = typed(validated.cfg)
    source = ensure_builtin("builtin:tiny_vl", store)
    work = tmp_path_factory.mktemp("tiny_vl")
    tok = AutoTokenizer.from_pretrained(str(source))
    assert publish_processor(source, work / "tokenizer", cfg.vision, tok)
    tok.save_pretrained(work / "tokenizer")
    tok = AutoTokenizer.from_pretrained(str(work / "tokenizer"))
    opts = DataOptions(stage="sft", dataset=("vlm_colours",), dataset_dir=str(folder("data")), template="qwen2_vl",
                       cutoff_len=128, max_samples=8)
    rows = build_datasets(opts, tok, mm_plugins.load(work / "tokenizer")).train
    torch.manual_seed(0)
    log: list[str] = []
    model = build(str(source), cfg, log=log.append)
    return cfg, model, rows, collator_for(cfg, tok, rows), log


def _with_grad_towers(model):
    """``model`` with its encoders' forward as transformers has it (autograd through a frozen tower)."""
    from llmpipe.models.frozen_towers import encoders

    for _, module in encoders(model):
        module.forward = module.llmpipe_forward_with_grad
    return model


def _losses(model, batch) -> list[float]:
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    out = []
    for _ in range(STEPS):
        loss = model(**batch).loss
        out.append(float(loss))
        loss.backward()
        opt.step()
        opt.zero_grad()
    return out


def test_label_only_head_runs_image_rows_with_the_same_losses(tiny_vl):
    from llmpipe.training.collators import column_names
    from llmpipe.training.lm_head import LabelOnlyBatches, label_only_head

    cfg, model, rows, collator, _ = tiny_vl
    plain_model, fast_model = _with_grad_towers(copy.deepcopy(model)), _with_grad_towers(copy.deepcopy(model))
    lines: list[str] = []
    fast = label_only_head(cfg, fast_model, collator, lines.append, columns=column_names(rows))
    assert isinstance(fast, LabelOnlyBatches)
    assert lines == [("label-only LM head: the vocabulary projection runs on the labelled positions only, image rows "
                      "too (the model's backbone runs the vision tower and the language model, as its own forward "
                      "does)")]
    features = [dict(r) for r in rows]
    plain_batch, fast_batch = collator(features), fast(features)
    assert fast_batch["label_only_head"] is True and "pixel_values" in fast_batch
    plain, got = _losses(plain_model, plain_batch), _losses(fast_model, fast_batch)
    assert got[-1] < got[0], got                                   # it learns
    assert max(abs(a - b) for a, b in zip(plain, got)) < 1e-6, (plain, got)
    # the audio rows' models run their encoder outside the backbone: their head stays as it is, and says so
    assert label_only_head(cfg, copy.deepcopy(model), collator, lines.append,
                           columns=["input_ids", "labels", "audios"]) is collator
    assert lines[-1] == "LM head over every position: the rows carry more than text (audios)"


def test_a_frozen_tower_runs_without_autograd_with_the_same_losses(tiny_vl):
    """Tower and merger frozen (the matched settings): the train stage's model runs its vision tower without autograd
    (no graph, no checkpoint recompute, no backward through it) and trains to the same losses, bit for bit."""
    _, model, rows, collator, log = tiny_vl
    assert "frozen encoder model.visual runs without autograd (none of its parameters trains)" in log, log
    batch = collator([dict(r) for r in rows])
    seen: dict[str, bool] = {}
    runs = {}
    for name, m in (("with grad", _with_grad_towers(copy.deepcopy(model))), ("without", copy.deepcopy(model))):
        def record(module, args, out, name=name):
            seen.setdefault(name, out.pooler_output.requires_grad)

        hook = m.get_base_model().model.visual.register_forward_hook(record)
        runs[name] = _losses(m, batch)
        hook.remove()
    assert seen == {"with grad": True, "without": False}           # on: the tower's output carries no graph
    assert runs["without"] == runs["with grad"] and runs["without"][-1] < runs["without"][0], runs


def test_the_collator_computes_the_m_rope_positions_the_model_would(tiny_vl):
    """Qwen-VL image batches carry the M-RoPE position ids, equal to the model's own ``get_rope_index`` for rows of
    different lengths (right and left padding) and for a row with two images; training on them gives the losses
    of the model's own computation, bit for bit; the train log says so."""
    from types import SimpleNamespace

    from llmpipe.training.padding_free import causal_collator

    cfg, model, rows, collator, _ = tiny_vl
    inner = model.get_base_model().model
    features = [dict(r) for r in rows]
    for i, f in enumerate(features[:4]):   # rows of different lengths: the answer's last tokens cut
        f["input_ids"], f["labels"] = f["input_ids"][:len(f["input_ids"]) - i], f["labels"][:len(f["labels"]) - i]
        f["attention_mask"] = f["attention_mask"][:len(f["input_ids"])]
    two = features[5]   # two images in one row, text between them
    features[5] = {"input_ids": list(two["input_ids"]) + list(features[6]["input_ids"]),
                   "labels": list(two["labels"]) + list(features[6]["labels"]),
                   "attention_mask": [1] * (len(two["input_ids"]) + len(features[6]["input_ids"])),
                   "images": list(two["images"]) + list(features[6]["images"])}
    side = collator.text.tokenizer.padding_side
    try:
        for collator.text.tokenizer.padding_side in ("right", "left"):
            batch = collator(features)
            assert batch["attention_mask"].sum(1).unique().numel() > 2   # padded rows
            want, _ = inner.get_rope_index(batch["input_ids"], mm_token_type_ids=batch["mm_token_type_ids"],
                                           image_grid_thw=batch["image_grid_thw"],
                                           attention_mask=batch["attention_mask"])
            assert torch.equal(batch["position_ids"], want)
    finally:
        collator.text.tokenizer.padding_side = side
    batch = collator([dict(r) for r in rows])
    own = {k: v for k, v in batch.items() if k != "position_ids"}
    assert _losses(copy.deepcopy(model), batch) == _losses(copy.deepcopy(model), own)
    lines: list[str] = []
    train = SimpleNamespace(padding_free=None)
    assert causal_collator(SimpleNamespace(train=train, model=cfg.model), model, rows, collator, lines.append) \
        is collator
    assert lines[-1] == ("M-RoPE position ids of image batches: computed by the collator, once per batch, not in "
                         "every forward")
