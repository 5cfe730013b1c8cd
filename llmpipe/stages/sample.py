"""run.sample: after a run, show what training changed on the held-out split: exact-match accuracy of greedy
answers before (the base model) and after (the final model), and three held-out examples with the expected
and the model's answer. Generation and scoring are the predict stage's (``infer.backends``, ``infer.metrics``)."""
from __future__ import annotations

SAMPLES = 3
MAX_EXAMPLES = 200     # the accuracy is measured on at most this many held-out examples (the first ones)


def _answers(obj, ref, prompter, prompts, max_new_tokens: int) -> list[str]:
    from llmpipe.infer.backends import open_backend
    from llmpipe.infer.generation import GenParams

    longest = max(map(len, prompts))
    params = GenParams(max_new_tokens=max_new_tokens, max_length=longest + max_new_tokens)
    backend = open_backend(obj, ref, prompter)
    try:
        done = backend.generate(prompts, params, batch_size=max(1, int(obj.train.per_device_eval_batch_size)))
    finally:
        backend.close()
    return [c.text.strip() for c in done]


def accuracy_report(plan, result, obj, max_new_tokens: int = 32) -> dict | None:
    """Greedy exact match (after strip, as ``predict_exact_match``) of the base and the final model on the held-out
    split: ``{"before", "after", "n", "examples": [(prompt, expected, answer), ...]}``; None without a held-out
    split or a trained model."""
    from llmpipe.data.errors import DataError
    from llmpipe.infer.backends import load_prompter
    from llmpipe.infer.heldout import heldout_examples
    from llmpipe.infer.metrics import score
    from llmpipe.infer.model_ref import final_model, from_stage_inputs

    loads = [result.outputs[n.id] for n in plan.nodes if n.kind.name == "load"]
    final = final_model(plan, result.outputs)
    if not loads or final is None:
        return None
    load_dir = loads[-1]
    base = from_stage_inputs(obj, load_dir, None)
    prompter = load_prompter(base.tokenizer, obj)
    try:
        examples = heldout_examples(obj, prompter.tokenizer)[:MAX_EXAMPLES]
    except DataError:   # no held-out split configured
        return None
    if not examples:
        return None
    cutoff = int(obj.data.cutoff_len)
    prompts = [prompter.encode(ex.messages, ex.system, ex.tools)[-cutoff:] for ex in examples]
    refs = [ex.reference.strip() for ex in examples]
    before = _answers(obj, base, prompter, prompts, max_new_tokens)
    after = _answers(obj, final, prompter, prompts, max_new_tokens)
    shown = [(" | ".join(m["content"] for m in ex.messages if m.get("role") == "user").replace("\n", " | "), ref, ans)
             for ex, ref, ans in zip(examples, refs, after)][:SAMPLES]
    return {"before": score(before, refs, "")["exact_match"], "after": score(after, refs, "")["exact_match"],
            "n": len(examples), "examples": shown}


def show_sample(plan, result, obj, max_new_tokens: int = 32) -> dict | None:
    report = accuracy_report(plan, result, obj, max_new_tokens)
    if report is None:
        print("  sample:    (no held-out split, or no trained model, to sample from)")
        return None
    print(f"  held-out accuracy: {report['before']:.0f}% before -> {report['after']:.0f}% after training "
          f"(exact match of greedy answers, {report['n']} examples)")
    for prompt, expected, answer in report["examples"]:
        mark = "right" if answer == expected else "WRONG"
        print(f"    {prompt[-100:]}")
        print(f"      expected: {expected}")
        print(f"      model:    {answer}   ({mark})")
    return report
