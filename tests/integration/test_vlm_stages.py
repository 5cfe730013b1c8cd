"""dpo and kto on image rows with the built-in tiny VLM (model=tiny_vl), through the real CLI, and what the other
stages and the packing switches do with images.

The preference data is built from the bundled colours images (llmpipe/data/mm_synthetic.py): the question is the
same for every row, the chosen answer is the shape's colour and the rejected one another colour, and every colour
is chosen and rejected equally often. An answer's reward that ignored the image would be one number per colour, so
it would rank held-out pairs right about half of the time: a held-out reward accuracy well above that shows that
the policy reads the image.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from pref_support import cli, last_lock, stage_output

pytestmark = pytest.mark.slow

COLOURS = ("black", "blue", "green", "red")
LF_PAIRWISE = {"formatting": "sharegpt", "ranking": True,
               "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected", "images": "images"}}
LF_KTO = {"formatting": "sharegpt", "columns": {"messages": "messages", "kto_tag": "label", "images": "images"},
          "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}}
COMMON = ["model=tiny_vl", "train.do_train=true", "data.template=chatml", "train.finetuning_type=lora",
          "model.disable_gradient_checkpointing=true", "train.save_steps=1000"]
# Measured on 2 CPU cores (LoRA r=16 + the merger trained whole, 12 steps of 8 pairs, beta 0.5, lr 5e-3): reward
# accuracy 0.00 before (all rewards 0: ties count as wrong) -> 0.906 after on 32 held-out pairs, margin 1.94.
MIN_ACCURACY = 0.8


def _wrong(right: str, i: int) -> str:
    return [c for c in COLOURS if c != right][i % 3]


def _pairs(rows: list[dict]) -> list[dict]:
    """LLaMA-Factory's sharegpt pairwise rows: chosen = the right colour, rejected = a wrong one."""
    return [{"conversations": [{"from": "human", "value": r["messages"][0]["content"]}],
             "chosen": {"from": "gpt", "value": r["messages"][1]["content"]},
             "rejected": {"from": "gpt", "value": _wrong(r["messages"][1]["content"], i)},
             "images": r["images"]} for i, r in enumerate(rows)]


def _unpaired(rows: list[dict]) -> list[dict]:
    """LLaMA-Factory's KTO rows: every other answer right (desirable) or wrong (undesirable)."""
    out = []
    for i, r in enumerate(rows):
        right, good = r["messages"][1]["content"], i % 2 == 0
        out.append({"messages": [r["messages"][0], {"role": "assistant", "content": right if good else _wrong(right, i)}],
                    "label": good, "images": r["images"]})
    return out


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    from llmpipe.resources import folder

    out = tmp_path_factory.mktemp("vlm_pref_data")
    train = json.loads((folder("data") / "vlm_colours.json").read_text())
    held = json.loads((folder("data") / "vlm_colours_eval.json").read_text())
    files = {"vlm_pref": _pairs(train[:96]), "vlm_pref_eval": _pairs(held[:32]), "vlm_kto": _unpaired(train[:8])}
    info = {}
    for name, rows in files.items():
        (out / f"{name}.json").write_text(json.dumps(rows))
        info[name] = {"file_name": f"{name}.json", **(LF_KTO if "kto" in name else LF_PAIRWISE)}
    (out / "dataset_info.json").write_text(json.dumps(info))
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("store")


@pytest.fixture(scope="module")
def dpo(tmp_path_factory, data_dir, store):
    cwd = tmp_path_factory.mktemp("dpo")
    proc = cli(cwd, store, *COMMON, "train.stage=dpo", f"data.dataset_dir={data_dir}", "data.dataset=vlm_pref",
               "data.eval_dataset=vlm_pref_eval", "data.cutoff_len=64", "pref.beta=0.5", "pref.precompute_reference=true",
               "train.max_steps=12", "train.per_device_train_batch_size=8", "train.per_device_eval_batch_size=32",
               "train.learning_rate=5e-3", "train.warmup_steps=0", "train.eval_strategy=no", "lora.rank=16",
               "vision.freeze_multi_modal_projector=false", "train.logging_steps=4")
    return proc, last_lock(cwd)


def test_dpo_learns_to_prefer_the_colour_in_the_image(dpo):
    """Held-out reward accuracy rises far above what a reward blind to the image could reach; the reference
    log-probs come from the reference stage, which scores the same image rows."""
    proc, lock = dpo
    m = lock["stages"]["train"]["metrics"]
    print(f"held-out reward accuracy {m.get('eval_reward_accuracy_initial')} -> {m['eval_reward_accuracy']}, "
          f"margin {m['eval_reward_margin']}")
    assert m["eval_reward_accuracy"] >= MIN_ACCURACY, m
    assert m["eval_reward_margin"] > 0
    assert "reference" in lock["stages"]
    # before training (LoRA: the policy is its base) every reward is 0 only if the reference stage scored exactly
    # the policy's inputs, images included
    assert m["eval_reward_margin_initial"] == pytest.approx(0.0, abs=1e-4)
    assert proc.stdout.count("image rows: pixel values reach the policy and the reference forward") == 2, proc.stdout


def test_kto_trains_on_image_rows_and_the_images_reach_the_forward(tmp_path, data_dir, store):
    """Two KTO steps (reference inline); the collator the trainer uses hands the model pixel values, and the
    policy's log-probs change when the images are blanked."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoTokenizer
    from trl import KTOConfig, KTOTrainer
    from vlm_support import white_png

    from llmpipe.data.published import open_published
    from llmpipe.training.mm_preference import COLUMN, adapt

    proc = cli(tmp_path, store, *COMMON, "train.stage=kto", f"data.dataset_dir={data_dir}", "data.dataset=vlm_kto",
               "data.cutoff_len=64", "train.max_steps=2",
               "train.per_device_train_batch_size=4", "train.eval_strategy=no", "pref.precompute_reference=false")
    assert "image rows: pixel values reach the policy and the reference forward" in proc.stdout
    lock = last_lock(tmp_path)
    assert "reference" not in lock["stages"] and lock["stages"]["train"]["metrics"]["global_step"] == 2
    load, train = stage_output(lock, "load"), stage_output(lock, "train")
    tok = AutoTokenizer.from_pretrained(str(load / "tokenizer"))
    train_ds, _ = open_published(load)
    args = KTOConfig(output_dir=str(tmp_path / "x"), max_length=64, report_to=[], bf16=False)
    _, ds, _, extra = adapt(KTOTrainer, args, tok, load, train_ds, None, log=lambda s: None)
    rows = [_tokenized(tok, dict(ds[i])) for i in range(4)]   # as TRL's KTO tokenizes them
    collate = extra["data_collator"]
    batch = collate(rows)
    blank = collate([{**r, COLUMN: [white_png(b) for b in r[COLUMN]]} for r in rows])
    assert batch["pixel_values"].shape[0] > 0 and int(batch["mm_token_type_ids"].sum()) > 0
    source = json.loads((load / "source.json").read_text())["model"]
    model = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(source, dtype=torch.float32),
                                      str(train / "adapter")).eval()

    def logps(b):
        keys = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw", "mm_token_type_ids")
        with torch.no_grad():
            logits = model(**{k: b[k] for k in keys}).logits[:, :-1].float()
        tgt = b["input_ids"][:, 1:]
        picked = torch.log_softmax(logits, -1).gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
        return (picked * b["completion_mask"][:, 1:]).sum(-1)

    assert not torch.allclose(logps(batch), logps(blank), atol=1e-4)


def _tokenized(tok, row: dict) -> dict:
    from llmpipe.training.mm_preference import COLUMN

    prompt = tok.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
    full = tok.apply_chat_template(row["prompt"] + row["completion"], tokenize=False)
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in (prompt, full)]
    return {"prompt_ids": ids[0], "completion_ids": ids[1][len(ids[0]):], "label": row["label"], COLUMN: row[COLUMN]}


def test_pairwise_cutoff_counts_the_visual_tokens(dpo, data_dir):
    """A pairwise row whose visual tokens alone exceed cutoff_len, or whose prompt (visual tokens included) leaves
    no room for an answer, is a bad row with the reason; a roomy cutoff keeps it."""
    from transformers import AutoTokenizer

    from llmpipe.data.formats import convert_rows
    from llmpipe.data.mm_pairwise import process_rows
    from llmpipe.data.mm_plugins import load as load_mm
    from llmpipe.data.registry import find_dataset

    _, lock = dpo
    folder = stage_output(lock, "load") / "tokenizer"
    tok, mm = AutoTokenizer.from_pretrained(str(folder)), load_mm(folder)
    spec = find_dataset("vlm_pref", str(data_dir))
    raw = json.loads((data_dir / "vlm_pref.json").read_text())[:2]
    examples, rep = convert_rows(raw, spec, "pairwise", media_root=str(data_dir))
    kept = process_rows(examples, tok, mm, {"cutoff_len": 64}, rep, str(data_dir), "pairwise")
    assert len(kept) == 2 and kept[0]["images"] and "<|image_pad|>" in kept[0]["prompt"][0]["content"]
    n_prompt = len(tok(tok.apply_chat_template(kept[0]["prompt"], tokenize=False, add_generation_prompt=True),
                       add_special_tokens=False)["input_ids"])
    for cutoff, reason in ((3, "visual tokens alone exceed cutoff_len=3"),
                           (n_prompt, f"fills cutoff_len={n_prompt}")):
        examples, rep = convert_rows(raw, spec, "pairwise", media_root=str(data_dir))
        assert process_rows(examples, tok, mm, {"cutoff_len": cutoff}, rep, str(data_dir), "pairwise") == []
        assert rep.dropped == 2 and all(reason in e["reason"] for e in rep.examples), rep.summary()


def test_padding_free_is_switched_off_for_image_rows_with_a_log_line():
    """Image rows keep their padded batches (each row its own M-RoPE positions); the train log says so."""
    from types import SimpleNamespace

    import datasets

    from llmpipe.training.padding_free import causal_collator

    ds = datasets.Dataset.from_dict({"input_ids": [[1, 2]], "labels": [[1, 2]], "attention_mask": [[1, 1]],
                                     "images": [[b"png"]]})
    lines: list[str] = []
    collator = object()
    for wanted in (None, True):
        cfg = SimpleNamespace(train=SimpleNamespace(padding_free=wanted), model=SimpleNamespace())
        assert causal_collator(cfg, None, ds, collator, lines.append) is collator
    line = "padded batches: image rows are not run padding-free (each row keeps its own M-RoPE positions)"
    assert lines == [line, line]


def test_neat_packing_and_padding_free_are_off_for_image_rows_with_a_log_line(tmp_path, store):
    """sft on image rows with data.neat_packing=true and train.padding_free at its default: one training step on
    unpacked, padded rows, and the log says so for each switch."""
    proc = cli(tmp_path, store, *COMMON, "train.stage=sft", "data.dataset=vlm_colours", "data.max_samples=4",
               "data.cutoff_len=64", "data.neat_packing=true", "train.max_steps=1",
               "train.per_device_train_batch_size=4", "train.eval_strategy=no")
    assert "packing is off for image rows (each row keeps its own M-RoPE positions)" in proc.stdout, proc.stdout
    assert "padded batches: image rows are not run padding-free" in proc.stdout, proc.stdout
    assert "rows" not in last_lock(tmp_path)["stages"]["load"].get("metrics", {}).get("packing", {})
