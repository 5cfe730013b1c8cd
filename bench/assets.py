"""The benchmark assets, built offline and deterministically by llmpipe itself.

    python -m bench.assets OUT_DIR [--device cuda]

- ``model/``: ``builtin:bench`` from llmpipe.models.tiny (Llama layout, hidden 256, 4 layers, 8 heads / 4 KV
  heads, intermediate 688, untied lm_head, a 4096-token byte-level BPE trained on llmpipe's bundled corpus,
  random init with a fixed seed; 4,999,424 parameters). ``--device cuda`` adds ``model_gpu/``: the same
  tokenizer on a random model shaped like Qwen2.5-0.5B (see GPU_SHAPE), saved in bf16.
- ``data/``: 512 SFT conversations (running-sum arithmetic, key-value fact QA, reverse-the-words; each grown
  until its ChatML length reaches a seeded uniform target in [28, 200] tokens) and 256 preference pairs
  (chosen = right answer, rejected = a wrong number / fact or a shuffled list), written twice:
  as LLaMA-Factory alpaca / ranking files (``bench_sft``, ``bench_pref``) and as chat-format files that
  llmpipe reads (``bench_sft_chat``, ``bench_pref_chat``; sharegpt layout with role/content tags, which both
  tools understand), all registered in ``dataset_info.json``.
- ``stats.json`` (token counts under the ChatML template both tools use) and ``MANIFEST.sha256``.

Pure python plus the llmpipe builder; no download. Rebuilt only when the builder's inputs change.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
from pathlib import Path

SEED = 1234
N_SFT, N_PREF = 512, 256
MIN_LEN, MAX_LEN = 28, 200
ASSETS_VERSION = "1"
# A random model shaped like Qwen2.5-0.5B (Llama layout: in transformers 5 a qwen2 config makes AutoTokenizer
# rebuild our tokenizer; the q/k/v biases of Qwen2 are left out, < 0.01 % of the FLOPs).
GPU_SHAPE = dict(vocab_size=151936, hidden_size=896, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, intermediate_size=4864, max_position_embeddings=32768,
                 tie_word_embeddings=True, rope_theta=1000000.0)

WORDS = ("amber basin cedar delta ember fable garnet harbor island jasper kernel lagoon meadow nectar orbit "
         "pebble quartz raven saddle timber umbra velvet willow yarrow zephyr anchor bramble copper dune "
         "falcon glacier hollow ivory juniper lantern marble nomad opal prairie quill ripple summit thistle "
         "tundra valley walnut").split()
ENTITIES = ("zorblat quimble flonket drizzap marvock plinth snorgle wuzzit trelpo gandrix blorp kizzle mopter "
            "yarnish fendle glimbo zappet crunkle vorpin tuzzle hobnik sprocklet dwindle quazzer nimbet rofflin "
            "skivvet thrumble wimpet zelkin brastle").split()
VALUES = "red blue green yellow purple orange white black silver golden brown pink".split()


def render(prompt: str, answer: str | None = None) -> str:
    """ChatML without a default system (LLaMA-Factory's ``chatml`` = llmpipe's ``chatml``)."""
    text = f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"
    return text if answer is None else text + f"{answer}<|im_end|>\n"


# ---- tasks: each returns (prompt, answer, wrong answer) for a task grown to ``k`` items --------------------
def _sum_task(rng: random.Random, k: int, nums: list[int]) -> tuple[str, str, str]:
    while len(nums) < k:
        nums.append(rng.randint(1, 40))
    totals, t = [], 0
    for n in nums[:k]:
        t += n
        totals.append(t)
    wrong = list(totals)
    j = rng.randrange(len(wrong))
    wrong[j] += rng.choice([-3, -2, -1, 1, 2, 3])
    prompt = "Give the running total of these numbers: " + " ".join(map(str, nums[:k]))
    return prompt, ", ".join(map(str, totals)), ", ".join(map(str, wrong))


def _fact_task(rng: random.Random, k: int, facts: list[tuple[str, str]]) -> tuple[str, str, str]:
    while len(facts) < k:
        used = {e for e, _ in facts}
        e = rng.choice([x for x in ENTITIES if x not in used] or ENTITIES)
        facts.append((e, rng.choice(VALUES)))
    ent, val = facts[0]
    shown = facts[:k]
    order = sorted(range(len(shown)), key=lambda i: (i * 7919) % (len(shown) + 1))
    prompt = "Facts: " + " ".join(f"The {shown[i][0]} is {shown[i][1]}." for i in order) + \
        f" Question: what colour is the {ent}?"
    wrong = rng.choice([v for v in VALUES if v != val])
    return prompt, f"The {ent} is {val}.", f"The {ent} is {wrong}."


def _reverse_task(rng: random.Random, k: int, words: list[str]) -> tuple[str, str, str]:
    while len(words) < k:
        words.append(rng.choice(WORDS))
    w = words[:k]
    shuffled = list(w)
    rng.shuffle(shuffled)
    if shuffled == w[::-1] and len(w) > 1:
        shuffled = shuffled[1:] + shuffled[:1]
    return "Reverse the order of these words: " + " ".join(w), " ".join(w[::-1]), " ".join(shuffled)


TASKS = {"sum": _sum_task, "fact": _fact_task, "reverse": _reverse_task}


def grow(rng: random.Random, kind: str, target: int, count, with_wrong: bool = False):
    """The task instance of ``kind`` grown one item at a time until its ChatML length (``count(text)``)
    reaches ``target``; never longer than MAX_LEN (the last size that fits is kept)."""
    state: list = []
    best = None
    for k in range(1, 400):
        prompt, answer, wrong = TASKS[kind](rng, k, state)
        n = count(render(prompt, answer))
        if with_wrong:
            n = max(n, count(render(prompt, wrong)))
        if n > MAX_LEN:
            break
        best = (prompt, answer, wrong)
        if n >= target:
            break
    if best is None:
        raise RuntimeError(f"a {kind} task of one item is longer than {MAX_LEN} tokens")
    return best


def build_rows(count, seed: int = SEED, n_sft: int = N_SFT, n_pref: int = N_PREF) -> tuple[list, list]:
    """(sft rows, preference rows) as plain dicts {prompt, answer} / {prompt, chosen, rejected}."""
    rng = random.Random(seed)
    kinds = list(TASKS)
    sft = []
    for i in range(n_sft):
        prompt, answer, _ = grow(rng, kinds[i % 3], rng.randint(MIN_LEN, MAX_LEN), count)
        sft.append({"prompt": prompt, "answer": answer})
    pref = []
    for i in range(n_pref):
        prompt, chosen, rejected = grow(rng, kinds[i % 3], rng.randint(MIN_LEN, MAX_LEN), count, with_wrong=True)
        pref.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return sft, pref


def token_stats(sft: list, pref: list, count) -> dict:
    full = [count(render(r["prompt"], r["answer"])) for r in sft]
    prompt = [count(render(r["prompt"])) for r in sft]
    ch = [count(render(r["prompt"], r["chosen"])) for r in pref]
    rj = [count(render(r["prompt"], r["rejected"])) for r in pref]
    return {
        "sft": {"rows": len(sft), "tokens": sum(full), "mean": sum(full) / len(full), "min": min(full),
                "max": max(full), "prompt_mean": sum(prompt) / len(prompt), "lengths": full},
        "pref": {"pairs": len(pref), "chosen_mean": sum(ch) / len(ch), "rejected_mean": sum(rj) / len(rj),
                 "pair_mean": (sum(ch) + sum(rj)) / len(pref), "max": max(ch + rj), "min": min(ch + rj)},
    }


def dataset_files(sft: list, pref: list) -> dict[str, object]:
    """file name -> JSON content (LLaMA-Factory alpaca/ranking + chat-format copies + dataset_info.json)."""
    chat_tags = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
                 "system_tag": "system"}
    files = {
        "sft_alpaca.json": [{"instruction": r["prompt"], "input": "", "output": r["answer"]} for r in sft],
        "pref_alpaca.json": [{"instruction": r["prompt"], "input": "", "chosen": r["chosen"],
                              "rejected": r["rejected"]} for r in pref],
        "sft_chat.json": [{"messages": [{"role": "user", "content": r["prompt"]},
                                        {"role": "assistant", "content": r["answer"]}]} for r in sft],
        "pref_chat.json": [{"messages": [{"role": "user", "content": r["prompt"]}],
                            "chosen": {"role": "assistant", "content": r["chosen"]},
                            "rejected": {"role": "assistant", "content": r["rejected"]}} for r in pref],
    }
    files["dataset_info.json"] = {
        "bench_sft": {"file_name": "sft_alpaca.json"},
        "bench_pref": {"file_name": "pref_alpaca.json", "ranking": True,
                       "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen",
                                   "rejected": "rejected"}},
        "bench_sft_chat": {"file_name": "sft_chat.json", "formatting": "sharegpt",
                           "columns": {"messages": "messages"}, "tags": chat_tags},
        "bench_pref_chat": {"file_name": "pref_chat.json", "formatting": "sharegpt", "ranking": True,
                            "columns": {"messages": "messages", "chosen": "chosen", "rejected": "rejected"},
                            "tags": chat_tags},
    }
    return files


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _counter(tokenizer):
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


def build_gpu_model(tok_dir: Path, out: Path) -> Path:
    """A random bf16 model of GPU_SHAPE with the bench tokenizer (ids stay below 4096)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    shape = dict(GPU_SHAPE)
    theta = shape.pop("rope_theta")
    cfg = LlamaConfig(**shape, rope_parameters={"rope_type": "default", "rope_theta": theta},
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      rms_norm_eps=1e-6, dtype="bfloat16")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def build(out_dir: str | Path, *, gpu: bool = False, log=print) -> dict:
    """Build (or reuse) the assets under ``out_dir``; returns stats.json's content."""
    from llmpipe.models.tiny import build_into, content_hash

    out = Path(out_dir)
    key = {"assets": ASSETS_VERSION, "model": content_hash("builtin:bench"), "seed": SEED,
           "sizes": [N_SFT, N_PREF, MIN_LEN, MAX_LEN]}
    stats_path = out / "stats.json"
    if stats_path.is_file() and json.loads(stats_path.read_text()).get("key") == key:
        stats = json.loads(stats_path.read_text())
        log(f"assets: reusing {out}")
    else:
        if out.exists():
            shutil.rmtree(out)
        (out / "data").mkdir(parents=True)
        log(f"assets: building builtin:bench into {out / 'model'}")
        build_into("builtin:bench", out / "model")
        from transformers import AutoTokenizer

        count = _counter(AutoTokenizer.from_pretrained(str(out / "model")))
        sft, pref = build_rows(count)
        for name, content in dataset_files(sft, pref).items():
            (out / "data" / name).write_text(json.dumps(content, indent=1, ensure_ascii=False) + "\n")
        stats = {"key": key, **token_stats(sft, pref, count)}
        files = sorted(p for p in out.rglob("*") if p.is_file())
        (out / "MANIFEST.sha256").write_text("".join(f"{_sha(p)}  {p.relative_to(out)}\n" for p in files))
        stats_path.write_text(json.dumps(stats, indent=1) + "\n")
        log(f"assets: {stats['sft']['rows']} SFT rows ({stats['sft']['tokens']} tokens, "
            f"{stats['sft']['min']}-{stats['sft']['max']}), {stats['pref']['pairs']} pairs")
    if gpu and not (out / "model_gpu" / "config.json").is_file():
        log("assets: building the Qwen2.5-0.5B-shaped random model (bf16)")
        build_gpu_model(out / "model", out / "model_gpu")
    return stats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.assets", description=__doc__.split("\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    a = ap.parse_args(argv)
    build(a.out_dir, gpu=a.device == "cuda")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
