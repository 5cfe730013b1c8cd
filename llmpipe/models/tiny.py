"""The built-in offline models ``builtin:tiny`` and ``builtin:bench``.

A byte-level BPE tokenizer trained on the bundled corpus (llmpipe.bundled_data/corpus/*.txt) and a
randomly initialised LlamaForCausalLM (fixed seed), saved with save_pretrained so that the ordinary
``AutoTokenizer/AutoModelForCausalLM.from_pretrained(folder)`` path loads them. Llama, not Qwen2: in
transformers 5 a qwen2 config makes AutoTokenizer rebuild the tokenizer and break it.

``ensure_builtin(name, cache_root)`` builds once per content hash, atomically and under a file lock.
Two builds anywhere produce byte-identical model.safetensors and tokenizer.json.
"""
from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
import shutil
import tempfile
from pathlib import Path

BUILDER_VERSION = "1"
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>")
BOS, EOS, PAD = "<|endoftext|>", "<|im_end|>", "<pad>"
DEFAULT_SYSTEM = "You are a helpful assistant."
TEMPLATE_NAME = "chatml"  # the tokenizer's own chat template = llmpipe.data.templates 'chatml' + DEFAULT_SYSTEM
COMPLETE = "_COMPLETE"
BUILTIN_CACHE_ENV = "LLMPIPE_BUILTIN_CACHE"

_TINY = dict(vocab_size=2048, hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             intermediate_size=256, max_position_embeddings=1024, tie_word_embeddings=True, seed=0)
# the brief deterministic pre-training of builtin:tiny (see the module docstring)
PRETRAIN = dict(steps=150, batch=32, seq_len=128, lr=3e-3, warmup=15, min_lr_ratio=0.1, weight_decay=0.1,
                n_chats=12000, corpus_epochs=1, chat_loss="all", seed=0)
SPECS: dict[str, dict] = {
    "builtin:tiny": dict(_TINY, pretrain=PRETRAIN),
    "builtin:tiny-random": dict(_TINY),
    "builtin:bench": dict(vocab_size=4096, hidden_size=256, num_hidden_layers=4, num_attention_heads=8,
                          num_key_value_heads=4, intermediate_size=688, max_position_embeddings=1024,
                          tie_word_embeddings=False, seed=0),
}


def is_builtin(name: str) -> bool:
    return isinstance(name, str) and name in SPECS


def builtin_names() -> list[str]:
    return sorted(SPECS)


def _spec(name: str) -> dict:
    if not is_builtin(name):
        raise ValueError(f"model.name_or_path={name!r} is not a built-in model; built-ins: {', '.join(builtin_names())}")
    return SPECS[name]


def corpus_files() -> list[tuple[str, bytes]]:
    """(file name, bytes) of the bundled tokenizer corpus, in name order."""
    from llmpipe.resources import folder

    root = folder("data") / "corpus"
    files = sorted((p.name, p.read_bytes()) for p in root.iterdir() if p.name.endswith(".txt"))
    if not files:
        raise FileNotFoundError(f"no corpus/*.txt in llmpipe.bundled_data ({root}); "
                                "run `python -m llmpipe.data.synthetic --out data`")
    return files


def _chat_template() -> str:
    from llmpipe.data.templates import render_template

    return render_template(TEMPLATE_NAME, DEFAULT_SYSTEM)


def content_hash(name: str) -> str:
    """sha256 (hex, 16 chars) over builder version, corpus bytes, hyper-parameters and chat template."""
    h = hashlib.sha256()
    head = {"builder": BUILDER_VERSION, "name": name, "spec": _spec(name), "special": SPECIAL_TOKENS,
            "bos": BOS, "eos": EOS, "pad": PAD, "template": _chat_template()}
    h.update(json.dumps(head, sort_keys=True).encode())
    for fname, data in corpus_files():
        h.update(f"\0{fname}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()[:16]


def folder_name(name: str) -> str:
    return f"{name.replace(':', '-')}-{content_hash(name)}"


def _train_tokenizer(vocab_size: int):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    lines = [ln for _, data in corpus_files() for ln in data.decode("utf-8").splitlines() if ln.strip()]
    tok = Tokenizer(models.BPE())
    # CJK ideographs are isolated (one pre-token each) so BPE cannot fuse whole Chinese task sentences
    # ("七加七等于十四") into single tokens; merges then stay at the character level for Chinese.
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex("[\u3400-\u9fff]"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    # Single-threaded training: merge ties must not depend on thread scheduling.
    old = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        tok.train_from_iterator(lines, trainer=trainer, length=len(lines))
    finally:
        if old is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = old
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                 unk_token=None, model_max_length=1024, padding_side="right")
    hf.chat_template = _chat_template()
    return hf


def build_tokenizer(name: str = "builtin:tiny"):
    """The tokenizer of built-in ``name`` in memory (no model, no torch): cheap for tests."""
    return _train_tokenizer(_spec(name)["vocab_size"])


def _segments(doc: tuple) -> list[tuple[str, bool]]:
    """(text, trained on) pieces of one pre-training document; a chat renders exactly like the template."""
    kind, body = doc
    if kind == "text":
        return [(body + BOS, True)]
    segs, msgs = [], body
    if msgs[0]["role"] != "system":
        segs.append((f"<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n", False))
    for m in msgs:
        if m["role"] == "assistant":
            segs += [("<|im_start|>assistant\n", False), (m["content"] + "<|im_end|>\n", True)]
        else:
            segs.append((f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n", False))
    segs.append((BOS, False))
    return segs


def pretrain_rows(tok, p: dict):
    """Packed (input_ids, labels) rows of ``seq_len`` tokens, in training order (pure python lists)."""
    from llmpipe.models.pretrain_data import documents

    segs = [s for d in documents(corpus_files(), p["seed"], p["n_chats"], p["corpus_epochs"], p.get("power", 0.5)) for s in _segments(d)]
    enc = tok._tokenizer.encode_batch([t for t, _ in segs], add_special_tokens=False)
    ids, labels = [], []
    for (_, train), e in zip(segs, enc):
        ids += e.ids
        labels += e.ids if (train or p["chat_loss"] == "all") else [-100] * len(e.ids)
    n = p["seq_len"]
    return [(ids[i:i + n], labels[i:i + n]) for i in range(0, len(ids) - n + 1, n)]


def _pretrain(model, tok, p: dict) -> None:
    """A plain single-threaded AdamW loop over ``pretrain_rows``: fixed seed, fixed order, no dropout."""
    import math

    import torch

    rows = pretrain_rows(tok, p)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(p["seed"])
            emb = model.get_input_embeddings().weight
            decay = [q for q in model.parameters() if q.dim() >= 2 and q is not emb]
            rest = [q for q in model.parameters() if q.dim() < 2]
            opt = torch.optim.AdamW([{"params": decay, "weight_decay": p["weight_decay"]},
                                     {"params": [emb], "weight_decay": 0.0, "lr": p["lr"] * p.get("embed_lr_mult", 1)},
                                     {"params": rest, "weight_decay": 0.0}], lr=p["lr"], betas=(0.9, 0.95))

            def lr_at(step):
                if step < p["warmup"]:
                    return (step + 1) / p["warmup"]
                t = (step - p["warmup"]) / max(1, p["steps"] - p["warmup"])
                return p["min_lr_ratio"] + (1 - p["min_lr_ratio"]) * 0.5 * (1 + math.cos(math.pi * t))

            sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
            model.train()
            b = p["batch"]
            for step in range(p["steps"]):
                batch = [rows[(step * b + j) % len(rows)] for j in range(b)]
                ids = torch.tensor([r[0] for r in batch])
                labels = torch.tensor([r[1] for r in batch])[:, 1:]
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=p.get("bf16", False)):
                    hidden = model.model(input_ids=ids).last_hidden_state[:, :-1]
                    keep = labels != -100  # the output layer runs only where there is a target
                    logits = model.lm_head(hidden[keep]).float()
                loss = torch.nn.functional.cross_entropy(logits, labels[keep])
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                if os.environ.get("TINY_DEBUG") and step % 25 == 0:
                    print("pretrain", step, round(loss.item(), 3), flush=True)
            model.eval()
    finally:
        torch.set_num_threads(threads)


def build_into(name: str, out_dir: str | Path) -> Path:
    """Build ``name`` into ``out_dir`` (no caching, no locking)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    spec = dict(_spec(name))
    seed = spec.pop("seed")
    pretrain = spec.pop("pretrain", None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = _train_tokenizer(spec["vocab_size"])
    if len(tok) > spec["vocab_size"]:
        raise RuntimeError(f"tokenizer has {len(tok)} tokens > vocab_size {spec['vocab_size']}")
    ids = {t: tok.convert_tokens_to_ids(t) for t in (BOS, EOS, PAD)}
    cfg = LlamaConfig(**spec, bos_token_id=ids[BOS], eos_token_id=ids[EOS], pad_token_id=ids[PAD],
                      rms_norm_eps=1e-6, attention_bias=False, dtype="float32")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
    if pretrain:
        _pretrain(model, tok, pretrain)
    model.generation_config = GenerationConfig(bos_token_id=ids[BOS], eos_token_id=ids[EOS],
                                               pad_token_id=ids[PAD])
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(out)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    tok.save_pretrained(out)
    return out


def models_dir(cache_root: str | Path) -> Path:
    """Where built-in models live: ``$LLMPIPE_BUILTIN_CACHE`` when set, else ``<cache_root>/models``."""
    shared = os.environ.get(BUILTIN_CACHE_ENV, "").strip()
    return Path(shared).expanduser() if shared else Path(cache_root).expanduser() / "models"


def ensure_builtin(name: str, cache_root: str | Path) -> Path:
    """The folder of built-in model ``name`` under ``models_dir(cache_root)``, built on first use.

    The build happens in a temp folder next to the target, gets a ``_COMPLETE`` marker and is moved
    into place with ``os.replace``; a FileLock keeps two processes from building it at once.
    """
    from filelock import FileLock

    models = models_dir(cache_root)
    final = models / folder_name(name)
    if (final / COMPLETE).is_file():
        return final
    models.mkdir(parents=True, exist_ok=True)
    with FileLock(str(models / f".{final.name}.lock")):
        if (final / COMPLETE).is_file():
            return final
        if final.exists():  # a leftover without marker: never trust it
            shutil.rmtree(final)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=models))
        try:
            build_into(name, tmp)
            manifest = {"name": name, "hash": content_hash(name), "builder": BUILDER_VERSION, "spec": _spec(name)}
            (tmp / COMPLETE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
            for f in tmp.iterdir():
                f.chmod(0o644)
            tmp.chmod(0o755)  # mkdtemp makes 0700; the cache may be shared
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final
