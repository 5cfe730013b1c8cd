"""predict: generate an answer for every held-out example (``train.do_predict``) with the final model of the
run (or the base model when nothing is trained), on the backend named by ``infer.backend``, with the
``generate.*`` settings (``data.eval_num_beams`` replaces ``num_beams`` when set).

Publishes ``generated_predictions.jsonl`` (one ``{"prompt", "label", "predict"}`` object per example, in the
order of the load stage's eval split) and ``predict_results.json`` with the metrics ``predict_bleu-4``,
``predict_rouge-1``, ``predict_rouge-2``, ``predict_rouge-l``, ``predict_exact_match`` (means x 100, see
llmpipe/infer/metrics.py), ``predict_samples``, ``predict_length_stops`` (answers cut by the token limit) and
``predict_truncated_prompts`` (prompts longer than ``data.cutoff_len``, cut from the left).

Held-out rows with images (a vision-language model) are prompted with their images, expanded as training
expanded them (llmpipe.infer.mm_request); such a prompt longer than ``data.cutoff_len`` stops the stage
instead of being cut.

Answers are generated in chunks written to the stage's work folder, so a killed run resumes after the last
finished chunk; sampling is seeded per chunk (``train.seed``), so a resumed run gives the same answers.
"""
from __future__ import annotations

import json

from llmpipe.stages.base import StageContext

PARTIAL = "predictions.partial.jsonl"


def _done_rows(path, chunk: int) -> list[dict]:
    """Rows of the finished chunks in a partial file (a torn last line or chunk is dropped)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            break
    return rows[:len(rows) - len(rows) % chunk]


def run(ctx: StageContext) -> dict:
    import time

    import torch

    from llmpipe.data.errors import DataError
    from llmpipe.infer.backends import load_prompter, open_backend
    from llmpipe.infer.generation import from_config
    from llmpipe.infer.heldout import cut_prompt, heldout_examples, prompt_encoder
    from llmpipe.infer.metrics import score
    from llmpipe.infer.mm_request import vision_for
    from llmpipe.infer.model_ref import from_stage_inputs

    obj = ctx.obj
    load_dir = ctx.input("load")
    ref = from_stage_inputs(obj, load_dir, ctx.inputs.get("model"))
    prompter = load_prompter(ref.tokenizer, obj)
    vision = vision_for(ref, obj, prompter.tokenizer)   # a vision-language model's images, else None
    examples = heldout_examples(obj, prompter.tokenizer, vision.tokens if vision is not None else None)
    report = json.loads((load_dir / "data_report.json").read_text())
    expected = None if "eval" in (report.get("packing") or {}) else (report.get("rows") or {}).get("eval")
    if expected is not None and expected != len(examples):
        raise DataError(f"the held-out split has {expected} rows in the load stage but {len(examples)} here; "
                        "the data changed under the run (run.force=[load] rebuilds it)")
    cutoff = int(obj.data.cutoff_len)
    prompts, truncated = [], 0
    encode = prompt_encoder(obj, prompter, vision, examples)
    for i, ex in enumerate(examples):
        ids = encode(ex)
        if len(ids) > cutoff:
            ids, truncated = cut_prompt(ids, cutoff, i), truncated + 1
        prompts.append(ids)
    params = from_config(obj, for_eval=True)
    batch = int(obj.train.per_device_eval_batch_size)
    chunk = max(batch, 1) * 4
    partial = ctx.work / PARTIAL
    ctx.work.mkdir(parents=True, exist_ok=True)
    rows = _done_rows(partial, chunk)
    partial.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    if rows:
        ctx.log(f"resuming after {len(rows)} of {len(examples)} predictions (found in {partial})")
    ctx.log(f"{ref.origin}: {ref.model}{' + ' + ', '.join(ref.adapters) if ref.adapters else ''}; "
            f"{len(examples)} prompts, backend {obj.infer.backend}")
    backend = open_backend(obj, ref, prompter)
    t0 = time.time()
    try:
        with partial.open("a", encoding="utf-8") as f:
            for start in range(len(rows), len(prompts), chunk):
                if params.seed is not None:
                    torch.manual_seed(params.seed + start // chunk)
                done = backend.generate(prompts[start:start + chunk], params, batch_size=batch)
                new = [{"prompt": prompter.tokenizer.decode(p, skip_special_tokens=False), "label": ex.reference,
                        "predict": c.text, "finish_reason": c.finish_reason}
                       for p, ex, c in zip(prompts[start:], examples[start:], done)]
                f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in new))
                f.flush()
                rows += new
                ctx.log(f"{len(rows)}/{len(prompts)} predictions ({time.time() - t0:.1f}s)")
    finally:
        backend.close()
    metrics = score([r["predict"] for r in rows], [r["label"] for r in rows])
    metrics["predict_length_stops"] = sum(r["finish_reason"] == "length" for r in rows)
    metrics["predict_truncated_prompts"] = truncated
    with (ctx.out / "generated_predictions.jsonl").open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({k: r[k] for k in ("prompt", "label", "predict")}, ensure_ascii=False) + "\n")
    (ctx.out / "predict_results.json").write_text(json.dumps(metrics, indent=2))
    ctx.log(", ".join(f"{k} {v:g}" for k, v in metrics.items() if isinstance(v, (int, float))))
    return {"metrics": metrics}
