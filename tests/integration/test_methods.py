"""Fine-tuning methods through the real pipeline (load -> adapt -> train [-> merge -> export]), in-process, on
the built-in tiny model and the bundled demo_sft data. For each method: the right parameters are trainable
(exact counts), the loss on the training data falls, and the published artifact reloads and reproduces the
logits the trained model had in memory when it was saved."""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.slow

QUICK = ["+recipe=demo", "data.dataset=demo_sft", "data.eval_dataset=demo_sft_eval",
         "model=tiny", "run.sample=false", "export.dir=null", "data.max_samples=64",
         "train.max_steps=8", "train.per_device_train_batch_size=8", "data.eval_dataset=null",
         "train.eval_strategy=no", "train.save_strategy=no", "train.logging_steps=4"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    shared = os.environ.get("LLMPIPE_BUILTIN_CACHE")
    if shared:   # build the pretrained built-in model once per test session
        (Path(shared) / "models").mkdir(parents=True, exist_ok=True)
        (root / "models").symlink_to(Path(shared) / "models")
    return root


@pytest.fixture
def captured(monkeypatch):
    """What the trained model computed on the first training rows, recorded by the train stage right before it
    saves the model."""
    import llmpipe.training.causal as causal

    seen: dict = {}
    original = causal.save_outputs

    def save_outputs(ctx, trainer, tokenizer, metrics):
        seen["probe"], seen["labels"] = probe_batch(ctx.load_dir, tokenizer)
        model = trainer.model
        seen["logits"] = logits_of(model, seen["probe"])
        seen["trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
        return original(ctx, trainer, tokenizer, metrics)

    monkeypatch.setattr(causal, "save_outputs", save_outputs)
    return seen


def run(store: Path, *overrides: str):
    from omegaconf import OmegaConf

    from llmpipe.config.compose import compose
    from llmpipe.pipeline.preflight import validate
    from llmpipe.pipeline.dag import build_plan
    from llmpipe.pipeline.lockfile import LockFile
    from llmpipe.pipeline.fingerprint import compute_fingerprints
    from llmpipe.pipeline.runner import Runner
    from llmpipe.pipeline.store import Store

    validated, problems = validate(compose([*QUICK, *overrides]))
    assert not problems, [p.render() for p in problems]
    plan = build_plan(validated.cfg)
    compute_fingerprints(plan, Path(store))
    lock = LockFile(None, OmegaConf.to_container(validated.cfg, resolve=True), [])
    result = Runner(plan, Store(store), lock).execute()
    return result, validated.obj


def probe_batch(load_dir: Path, tokenizer):
    """The first 8 rows the train stage trained on, padded (ids with the pad id, labels with -100)."""
    from llmpipe.data.published import open_published

    rows = open_published(load_dir)[0].select(range(8))
    n = max(len(r) for r in rows["input_ids"])
    ids = torch.full((8, n), tokenizer.pad_token_id)
    labels = torch.full((8, n), -100)
    for i, (x, y) in enumerate(zip(rows["input_ids"], rows["labels"])):
        ids[i, :len(x)], labels[i, :len(y)] = torch.tensor(x), torch.tensor(y)
    return ids, labels


def loss_of(logits, labels) -> float:
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                             ignore_index=-100).item()


def base_model(cfg, store, **kw):
    from llmpipe.models.loading import load_causal_lm, resolve_source

    return load_causal_lm(resolve_source(cfg.model.name_or_path, store), cfg, log=lambda s: None, **kw)


def logits_of(model, ids):
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids.to(next(model.parameters()).device)).logits.float().cpu()


def lora_params(model, rank: int) -> int:
    return sum(rank * (m.in_features + m.out_features) for n, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and "lm_head" not in n)


def check_reload_and_learning(seen, reloaded, base):
    after = logits_of(reloaded, seen["probe"])
    assert torch.allclose(after, seen["logits"], atol=1e-4), (after - seen["logits"]).abs().max()
    before = loss_of(logits_of(base, seen["probe"]), seen["labels"])
    assert loss_of(after, seen["labels"]) < before - 0.05, (loss_of(after, seen["labels"]), before)


def test_full_with_accuracy_tensorboard_and_new_tokens(store, captured, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tensorboard = importlib.util.find_spec("tensorboard") is not None   # the `trackers` extra
    result, cfg = run(store, "train.finetuning_type=full", "train.learning_rate=1e-3",
                      "data.eval_dataset=demo_sft_eval", "train.eval_strategy=epoch", "train.compute_accuracy=true",
                      f"train.report_to={'tensorboard' if tensorboard else 'none'}",
                      f"train.logging_dir={tmp_path / 'tb'}", "model.add_special_tokens='<tool>'",
                      "model.resize_vocab=true")
    m = result.metrics["train"]
    assert 0.0 < m["eval_accuracy"] < 1.0 and m["eval_loss"] < m["eval_loss_initial"]
    assert list((tmp_path / "tb").rglob("events.out.tfevents.*")) or not tensorboard
    out = result.outputs["train"] / "model"
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.get_input_embeddings().weight.shape[0] == 2048 + 64
    assert "<tool>" in AutoTokenizer.from_pretrained(out).get_vocab()
    assert captured["trainable"] == sum(p.numel() for p in model.parameters())
    check_reload_and_learning(captured, model, base_model(cfg, store))


def test_freeze_llama_pro(store, captured):
    from transformers import AutoModelForCausalLM

    result, cfg = run(store, "train.finetuning_type=freeze", "freeze.use_llama_pro=true",
                      "freeze.trainable_layers=2")
    model = AutoModelForCausalLM.from_pretrained(result.outputs["train"] / "model")
    assert model.config.num_hidden_layers == 4 and model.config.llmpipe_llama_pro == [1, 3]
    block = sum(p.numel() for p in model.model.layers[1].parameters())
    assert captured["trainable"] == 2 * block
    check_reload_and_learning(captured, model, base_model(cfg, store))


def test_lora_dora(store, captured):
    from peft import PeftModel

    result, cfg = run(store, "lora=dora", "lora.rank=8")
    base = base_model(cfg, store)
    magnitudes = sum(m.out_features for n, m in base.named_modules()
                     if isinstance(m, torch.nn.Linear) and "lm_head" not in n)
    assert captured["trainable"] == lora_params(base, 8) + magnitudes
    reloaded = PeftModel.from_pretrained(base_model(cfg, store), str(result.outputs["train"] / "adapter"))
    check_reload_and_learning(captured, reloaded, base)


def test_pissa_converted_merged_and_exported(store, captured, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    result, cfg = run(store, "lora=pissa", "lora.rank=8", "train.learning_rate=1e-3",
                      f"export.dir={tmp_path / 'export'}")
    adapter = result.outputs["train"] / "adapter"
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 16   # converted: rank 2r
    base = base_model(cfg, store)
    assert captured["trainable"] == lora_params(base, 8)
    check_reload_and_learning(captured, PeftModel.from_pretrained(base_model(cfg, store), str(adapter)), base)
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "export")
    assert torch.allclose(logits_of(exported, captured["probe"]), captured["logits"], atol=1e-3)


def test_qlora_bnb4(store, captured):
    pytest.importorskip("bitsandbytes")
    from peft import PeftModel

    result, cfg = run(store, "quantization=bnb4", "lora.rank=8")
    quantized = base_model(cfg, store, training=True)
    assert type(quantized.model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"
    assert captured["trainable"] == lora_params(base_model(cfg, store), 8)
    reloaded = PeftModel.from_pretrained(quantized, str(result.outputs["train"] / "adapter"))
    check_reload_and_learning(captured, reloaded, base_model(cfg, store, training=True))
