"""One LoRA training step, timed in isolation, in any venv: tells the Hugging Face stack's own speed apart
from the orchestration around it (llmpipe's venv has transformers 5.23 / PEFT 0.21, LF's 5.6 / 0.18.1).

    <venv>/bin/python -m bench.stepbench MODEL_DIR [--steps 20] [--batch 4] [--seq 118] [--gc]

Prints JSON: seconds and CPU seconds per step (median of the steps after 3 warm-up steps), versions.
Only torch, transformers and peft are used, with the settings of the matched runs (LoRA r 8 / alpha 16 on all
projections, fused AdamW, fp32, reentrant gradient checkpointing with --gc).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=118)
    ap.add_argument("--gc", action="store_true")
    a = ap.parse_args()

    import peft
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    if a.gc:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
        model.enable_input_require_grads()
    model.config.use_cache = False
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=[
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=True)
    ids = torch.randint(4, 4000, (a.batch, a.seq))
    step_s, step_cpu_s, _ = timed_steps(model, opt, lambda: {"input_ids": ids, "labels": ids}, a.steps)
    print(json.dumps({"transformers": transformers.__version__, "peft": peft.__version__, "torch": torch.__version__,
                      "gc": a.gc, "step_s": step_s, "step_cpu_s": step_cpu_s, "tok_s": a.batch * a.seq / step_s}))


def timed_steps(model, opt, inputs, steps: int, warmup: int = 3) -> tuple[float, float, float]:
    """``warmup + steps`` training steps (forward on ``inputs()``, backward, clip 1.0, optimizer step); the
    median wall and CPU seconds of the steps after the warm-up, and the last loss."""
    import torch

    walls, cpus = [], []
    for _ in range(steps + warmup):
        w, c = time.perf_counter(), time.process_time()
        loss = model(**inputs()).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return statistics.median(walls[warmup:]), statistics.median(cpus[warmup:]), float(loss)


if __name__ == "__main__":
    main()
