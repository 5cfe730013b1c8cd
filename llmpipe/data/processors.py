"""Processors: internal examples (llmpipe.data.formats) -> trainer-ready rows.

* supervised: chat-template tokenization, ``labels`` -100 on prompt tokens (unless ``train_on_prompt``),
  every assistant turn trained (only the last with ``mask_history``), ``cutoff_len`` truncation that
  keeps the response where possible; rows left with no trainable token are dropped and reported.
* pretraining: text + eos; with ``packing`` concatenated and cut into ``cutoff_len`` blocks (the
  shorter tail block is kept), else each document truncated.
* pairwise / kto / prompt: TRL's conversational formats (TRL tokenizes them itself).

The conversation is split into (source, target) text pieces by rendering message prefixes with the
chat template; each piece is tokenized on its own, so the labels never depend on offsets.
"""
from __future__ import annotations

from llmpipe.data.errors import DataError
from llmpipe.data.formats import RowReport

IGNORE_INDEX = -100
TOOLS_HEADER = "\n\nYou have access to the following tools:\n"


def chat_messages(ex: dict, default_system: str | None = None) -> list[dict]:
    """The example's messages with its system prompt (or ``default_system``) and tools in front."""
    system = ex.get("system") or default_system
    if ex.get("tools"):
        system = (system or "") + TOOLS_HEADER + ex["tools"]
    msgs = [dict(m) for m in ex["messages"]]
    return ([{"role": "system", "content": system}] if system else []) + msgs


def _render(tokenizer, msgs: list[dict], gen: bool) -> str:
    return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)


def turn_pieces(tokenizer, msgs: list[dict]) -> list[tuple[str, str]]:
    """(source, target) text per assistant turn; concatenated they are the rendered conversation."""
    pieces, done = [], ""
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        prompt, full = _render(tokenizer, msgs[:i], True), _render(tokenizer, msgs[: i + 1], False)
        if not prompt.startswith(done) or not full.startswith(prompt):
            raise DataError("the chat template does not render conversations prefix-by-prefix (an earlier turn "
                            "changes when a later one is added); set data.template to a named template")
        pieces.append((prompt[len(done):], full[len(prompt):]))
        done = full
    return pieces


def infer_seqlen(source_len: int, target_len: int, cutoff_len: int) -> tuple[int, int]:
    """How many source/target tokens to keep (LLaMA-Factory's rule: short targets are kept whole)."""
    if target_len * 2 < cutoff_len:
        max_target = cutoff_len
    elif source_len * 2 < cutoff_len:
        max_target = cutoff_len - source_len
    else:
        max_target = int(cutoff_len * target_len / (source_len + target_len))
    new_target = min(max_target, target_len)
    new_source = min(max(cutoff_len - new_target, 0), source_len)
    return new_source, new_target


def encode_turns(pairs: list[tuple[list[int], list[int]]], cutoff_len: int | None, train_on_prompt: bool = False,
                 mask_history: bool = False) -> tuple[list[int], list[int], list[str]]:
    """input_ids, labels and notes (what truncation did) for tokenized (source, target) pairs."""
    input_ids: list[int] = []
    labels: list[int] = []
    notes: list[str] = []
    total = 0
    order = list(range(len(pairs)))[::-1] if mask_history else range(len(pairs))
    for k, t in enumerate(order):
        if cutoff_len and total >= cutoff_len:
            notes.append("turns dropped to fit cutoff_len")
            break
        src, tgt = pairs[t]
        if cutoff_len:
            s_len, t_len = infer_seqlen(len(src), len(tgt), cutoff_len - total)
            if s_len < len(src):
                notes.append("prompt truncated to fit cutoff_len")
            if t_len < len(tgt):
                notes.append("response truncated to fit cutoff_len")
            src, tgt = src[len(src) - s_len:], tgt[:t_len]  # keep the prompt's end (turn header), response's start
        total += len(src) + len(tgt)
        src_lab = list(src) if train_on_prompt else [IGNORE_INDEX] * len(src)
        tgt_lab = [IGNORE_INDEX] * len(tgt) if mask_history and k > 0 else list(tgt)
        if mask_history:
            input_ids, labels = list(src) + list(tgt) + input_ids, src_lab + tgt_lab + labels
        else:
            input_ids, labels = input_ids + list(src) + list(tgt), labels + src_lab + tgt_lab
    return input_ids, labels, sorted(set(notes))


def _indices(n: int, indices):
    return list(indices) if indices is not None else list(range(n))


def process_supervised(examples: list[dict], tokenizer, *, cutoff_len: int | None = None,
                       train_on_prompt: bool = False, mask_history: bool = False,
                       default_system: str | None = None, report: RowReport | None = None,
                       indices=None, batch_size: int = 1000) -> list[dict]:
    """Tokenize SFT examples into input_ids / attention_mask / labels."""
    report = report if report is not None else RowReport("?")
    idx = _indices(len(examples), indices)
    out = []
    for start in range(0, len(examples), max(1, batch_size or 1000)):
        batch = examples[start:start + (batch_size or 1000)]
        pieces = [turn_pieces(tokenizer, chat_messages(ex, default_system)) for ex in batch]
        flat = [s for p in pieces for pair in p for s in pair]
        ids = tokenizer(flat, add_special_tokens=False)["input_ids"] if flat else []
        pos = 0
        for j, p in enumerate(pieces):
            pairs = [(ids[pos + 2 * q], ids[pos + 2 * q + 1]) for q in range(len(p))]
            pos += 2 * len(p)
            input_ids, labels, notes = encode_turns(pairs, cutoff_len, train_on_prompt, mask_history)
            if all(x == IGNORE_INDEX for x in labels):
                report.bad(idx[start + j], f"no trainable token left within cutoff_len={cutoff_len}")
                continue
            for n in notes:
                report.notes[n] += 1
            out.append({"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels})
    report.kept = len(out)
    return out


def example_text(ex: dict) -> str:
    return "\n".join(m["content"] for m in ex["messages"])


def process_pretrain(examples: list[dict], tokenizer, *, cutoff_len: int | None = None, packing: bool = True,
                     report: RowReport | None = None, indices=None) -> list[dict]:
    """Text + eos per document; packed into ``cutoff_len`` blocks or truncated per document."""
    report = report if report is not None else RowReport("?")
    eos = tokenizer.eos_token or ""
    docs = tokenizer([example_text(ex) + eos for ex in examples], add_special_tokens=False)["input_ids"]
    if packing and cutoff_len:
        flat = [t for d in docs for t in d]
        blocks = [flat[i:i + cutoff_len] for i in range(0, len(flat), cutoff_len)]
        if blocks and len(blocks[-1]) < cutoff_len:
            report.notes[f"last block shorter than cutoff_len ({len(blocks[-1])} tokens)"] += 1
    else:
        blocks = []
        for d in docs:
            if cutoff_len and len(d) > cutoff_len:
                report.notes["document truncated to cutoff_len"] += 1
                d = d[:cutoff_len]
            blocks.append(d)
    report.kept = len(examples)
    return [{"input_ids": b, "attention_mask": [1] * len(b), "labels": list(b)} for b in blocks if b]


def _prompt_msgs(ex: dict, default_system: str | None, drop_last: bool) -> list[dict]:
    msgs = chat_messages(ex, default_system)
    return msgs[:-1] if drop_last else msgs


def process_pairwise(examples: list[dict], *, default_system: str | None = None, **_) -> list[dict]:
    """TRL conversational preference rows: prompt messages, chosen / rejected assistant messages."""
    return [{"prompt": _prompt_msgs(ex, default_system, False),
             "chosen": [{"role": "assistant", "content": ex["chosen"]}],
             "rejected": [{"role": "assistant", "content": ex["rejected"]}]} for ex in examples]


def process_kto(examples: list[dict], *, default_system: str | None = None, **_) -> list[dict]:
    """TRL conversational unpaired-preference rows: prompt, completion, label."""
    return [{"prompt": _prompt_msgs(ex, default_system, True),
             "completion": [{"role": "assistant", "content": ex["messages"][-1]["content"]}],
             "label": bool(ex["label"])} for ex in examples]


def process_prompt(examples: list[dict], *, default_system: str | None = None, **_) -> list[dict]:
    """Prompt-only rows (generation, RL stages)."""
    return [{"prompt": _prompt_msgs(ex, default_system, False)} for ex in examples]
