"""run.sample: after a run, show what training changed on the held-out split: exact-match accuracy of greedy
answers before (the base model) and after (the final model), and three held-out examples with the expected
and the model's answer. Generation and scoring are the predict stage's (``infer.backends``, ``infer.metrics``).
A vision-language model is prompted with each held-out row's images, as predict prompts it
(llmpipe.infer.mm_request)."""
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
    from llmpipe.infer.backends import load_prompter
    from llmpipe.infer.heldout import cut_prompt, heldout_examples, prompt_encoder
    from llmpipe.infer.metrics import score
    from llmpipe.infer.mm_request import vision_for
    from llmpipe.infer.model_ref import final_model, from_stage_inputs

    loads = [result.outputs[n.id] for n in plan.nodes if n.kind.name == "load"]
    final = final_model(plan, result.outputs)
    if not loads or final is None:
        return None
    load_dir = loads[-1]
    base = from_stage_inputs(obj, load_dir, None)
    prompter = load_prompter(base.tokenizer, obj)
    vision = vision_for(base, obj, prompter.tokenizer)   # a vision-language model's images, else None
    if not (obj.data.eval_dataset or obj.data.val_size):   # no held-out split configured
        return None
    examples = heldout_examples(obj, prompter.tokenizer, vision.tokens if vision is not None else None)
    examples = examples[:MAX_EXAMPLES]
    if not examples:
        return None
    cutoff = int(obj.data.cutoff_len)
    encode = prompt_encoder(obj, prompter, vision, examples)   # with each row's images, as predict
    prompts = [ids if len(ids) <= cutoff else cut_prompt(ids, cutoff, i) for i, ids in enumerate(map(encode, examples))]
    refs = [ex.reference.strip() for ex in examples]
    before = _answers(obj, base, prompter, prompts, max_new_tokens)
    after = _answers(obj, final, prompter, prompts, max_new_tokens)
    shown = [(" | ".join(m["content"] for m in ex.messages if m.get("role") == "user").replace("\n", " | "), ref, ans)
             for ex, ref, ans in zip(examples, refs, after)][:SAMPLES]
    return {"before": score(before, refs, "")["exact_match"], "after": score(after, refs, "")["exact_match"],
            "n": len(examples), "examples": shown}


def show_sample(plan, result, obj, max_new_tokens: int = 32) -> dict | None:
    from llmpipe.data.errors import DataError

    try:
        report = accuracy_report(plan, result, obj, max_new_tokens)
    except DataError as e:   # held-out rows that cannot be prompted: say why, the run itself is done
        print(f"  sample:    not shown: {e}")
        return None
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
