"""run.sample: after a run, show one held-out prompt, the expected answer and the trained model's greedy
answer (a quick look that training did something)."""
from __future__ import annotations

from pathlib import Path


def _final_model(plan, result) -> tuple[Path | None, Path | None]:
    """(model folder, adapter folder) of the last model the run produced."""
    for node in reversed(plan.nodes):
        out = result.outputs[node.id]
        if node.kind.name == "export":
            return out, None
        if (out / "model").is_dir():
            return out / "model", None
        if (out / "adapter").is_dir():
            return None, out / "adapter"
    return None, None


def show_sample(plan, result, obj, max_new_tokens: int = 32) -> None:
    import torch
    from datasets import load_from_disk
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmpipe.stages.load import read_source

    load_dir = [result.outputs[n.id] for n in plan.nodes if n.kind.name == "load"][-1]
    if not (load_dir / "eval").exists():
        print("  sample:    (no held-out split to sample from)")
        return
    row = load_from_disk(str(load_dir / "eval"))[0]
    ids, labels = row["input_ids"], row["labels"]
    cut = next((i for i, lab in enumerate(labels) if lab != -100), len(ids))
    model_dir, adapter = _final_model(plan, result)
    tok = AutoTokenizer.from_pretrained(str(model_dir or adapter))
    if model_dir is not None:
        model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    else:
        from peft import PeftModel

        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(read_source(load_dir)), str(adapter))
    model.eval()
    prompt = torch.tensor([ids[:cut]])
    with torch.no_grad():
        out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    answer = tok.decode(out[0, cut:], skip_special_tokens=True).strip()
    expected = tok.decode([t for t in labels[cut:] if t != -100], skip_special_tokens=True).strip()
    print("  sample:")
    print("    prompt:   " + tok.decode(ids[:cut], skip_special_tokens=True).strip().replace("\n", " | ")[-160:])
    print(f"    expected: {expected}")
    print(f"    model:    {answer}")
