"""run.sample: after a run, show one held-out prompt, the expected answer and the final model's greedy
answer (a quick look that training did something)."""
from __future__ import annotations


def show_sample(plan, result, obj, max_new_tokens: int = 32) -> None:
    from datasets import load_from_disk

    from llmpipe.infer.engine import load_prompter
    from llmpipe.infer.generation import GenParams
    from llmpipe.infer.hf_backend import HFBackend
    from llmpipe.infer.model_ref import final_model, from_stage_inputs

    load_dir = [result.outputs[n.id] for n in plan.nodes if n.kind.name == "load"][-1]
    rows = load_from_disk(str(load_dir / "eval")) if (load_dir / "eval").exists() else None
    if rows is None or "labels" not in rows.column_names:
        print("  sample:    (no tokenized held-out split to sample from)")
        return
    row = rows[0]
    ids, labels = row["input_ids"], row["labels"]
    cut = next((i for i, lab in enumerate(labels) if lab != -100), len(ids))
    ref = final_model(plan, result.outputs) or from_stage_inputs(obj, load_dir, None)
    prompter = load_prompter(str(load_dir / "tokenizer"), obj)
    params = GenParams(max_new_tokens=max_new_tokens, max_length=cut + max_new_tokens)
    answer = HFBackend(ref, obj, prompter).generate([ids[:cut]], params)[0].text.strip()
    tok = prompter.tokenizer
    expected = tok.decode([t for t in labels[cut:] if t != -100], skip_special_tokens=True).strip()
    print("  sample:")
    print("    prompt:   " + tok.decode(ids[:cut], skip_special_tokens=True).strip().replace("\n", " | ")[-160:])
    print(f"    expected: {expected}")
    print(f"    model:    {answer}")
