"""One LoRA training step of the multimodal measure, timed in isolation, in either venv: tells the Hugging
Face stack's own speed (llmpipe's .venv: torch 2.13.0+cpu, transformers 5.25; bench/.lfvlmvenv: torch 2.14.1
CUDA build, transformers 5.6) apart from what each tool does around it.

    <venv>/bin/python -m bench.vlmstep bench/work/vlm/assets [--steps 20] [--no-gc] [--no-collate] [--answer-labels]
        [--label-only] [--frozen-tower-no-grad]

The batch is the measure's first 8 rows (qwen2_vl template, 4 visual tokens each, 43 tokens): each step
decodes the 8 PNGs and runs the image processor (as a collator does; --no-collate does it once) and then
forward, backward, clipping and a fused AdamW step with LoRA r 8 / alpha 16 on the language model's 7
projections (vision tower and merger frozen), fp32, reentrant gradient checkpointing unless --no-gc.
Every text token carries a label unless --answer-labels (only the answer, ``<|im_end|>`` and the newline, as in
both tools' SFT). llmpipe's own paths, each on its own (they need llmpipe importable: the repository root as the
working directory): --label-only, the label-only LM head (llmpipe.training.lm_head: the vocabulary projection of
the labelled positions only); --frozen-tower-no-grad, the frozen vision tower without autograd
(llmpipe.models.frozen_towers). Prints JSON: median wall and CPU seconds per step after 3 warm-up steps, the last
loss, and the versions.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.stepbench import timed_steps

SYSTEM = "You are a helpful assistant."
TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


def batch(assets: Path, n: int, tok, proc):
    import torch
    from PIL import Image

    rows = json.loads((assets / "data" / "vlm_bench.json").read_text())[:n]
    texts, images = [], []
    for r in rows:
        img = Image.open(assets / "data" / r["images"][0]).convert("RGB")
        grid = proc(images=[img], return_tensors="pt")["image_grid_thw"][0]
        k = int(grid.prod()) // proc.merge_size ** 2
        user = r["messages"][0]["content"].replace("<image>", "<|vision_start|>" + "<|image_pad|>" * k +
                                                   "<|vision_end|>")
        texts.append(f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
                     f"<|im_start|>assistant\n{r['messages'][1]['content']}<|im_end|>\n")
        images.append(assets / "data" / r["images"][0])
    ids = torch.tensor([tok(t, add_special_tokens=False)["input_ids"] for t in texts])   # all rows are 43 long
    labels = ids.clone()
    labels[ids == tok.convert_tokens_to_ids("<|image_pad|>")] = -100
    return ids, labels, images


def pixels(images, proc):
    from PIL import Image

    out = proc(images=[Image.open(p).convert("RGB") for p in images], return_tensors="pt")
    return out["pixel_values"], out["image_grid_thw"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("assets", type=Path)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--no-gc", action="store_true")
    ap.add_argument("--no-collate", action="store_true")
    ap.add_argument("--answer-labels", action="store_true")
    ap.add_argument("--label-only", action="store_true")
    ap.add_argument("--frozen-tower-no-grad", action="store_true")
    a = ap.parse_args()

    import peft
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model
    from transformers import AutoImageProcessor, AutoTokenizer
    from transformers import Qwen2VLForConditionalGeneration as Model

    torch.manual_seed(0)
    model_dir = str(a.assets / "model")
    tok = AutoTokenizer.from_pretrained(model_dir)
    proc = AutoImageProcessor.from_pretrained(model_dir)
    model = Model.from_pretrained(model_dir, dtype=torch.float32)
    if not a.no_gc:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
        model.enable_input_require_grads()
    model.config.use_cache = False
    if a.label_only:
        from llmpipe.training.lm_head import add_label_only_head

        add_label_only_head(model)
    if a.frozen_tower_no_grad:
        from llmpipe.models.frozen_towers import run_frozen_towers_without_grad

        run_frozen_towers_without_grad(model)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=TARGETS))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, fused=True)
    ids, labels, images = batch(a.assets, a.batch, tok, proc)
    if a.answer_labels:   # what follows the last "<|im_start|>assistant\n": the answer, <|im_end|> and "\n"
        head = len(tok("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"])
        start = tok.convert_tokens_to_ids("<|im_start|>")
        for row, row_ids in zip(labels, ids.tolist()):
            row[:len(row_ids) - row_ids[::-1].index(start) - 1 + head] = -100
    pv, grid = pixels(images, proc)
    types = (ids == tok.convert_tokens_to_ids("<|image_pad|>")).long()   # 1 on image tokens (both versions)
    def inputs():   # the collator's work (decode + image processor) inside the step unless --no-collate
        px, g = pixels(images, proc) if not a.no_collate else (pv, grid)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels, "pixel_values": px,
                "image_grid_thw": g, "mm_token_type_ids": types, **({"label_only_head": True} if a.label_only else {})}
    step_s, step_cpu_s, loss = timed_steps(model, opt, inputs, a.steps)
    print(json.dumps({"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
                      "gc": not a.no_gc, "collate": not a.no_collate,
                      "answer_labels": a.answer_labels, "label_only": a.label_only,
                      "frozen_tower_no_grad": a.frozen_tower_no_grad, "threads": torch.get_num_threads(),
                      "step_s": step_s, "step_cpu_s": step_cpu_s, "loss": loss}))

if __name__ == "__main__":
    main()
