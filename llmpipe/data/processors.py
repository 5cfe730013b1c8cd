"""Processors: internal examples (llmpipe.data.formats) -> trainer-ready rows.

* supervised: chat-template tokenization, ``labels`` -100 on prompt tokens (unless ``train_on_prompt``),
  every assistant turn trained (only the last with ``mask_history``), ``cutoff_len`` truncation that
  keeps the response where possible; rows left with no trainable token are dropped and reported.
* pretraining: text + eos per document (packing / truncation: llmpipe.data.packing).
* pairwise / kto / prompt: TRL's conversational formats (TRL tokenizes them itself).

``tokenize_batch`` is the batched function the loader runs with ``datasets.map`` (batched,
``preprocessing_batch_size`` rows per call, ``preprocessing_num_workers`` processes); it marks bad rows in
a ``_bad`` column instead of dropping them, so the loader can count and report them. The list functions
(``process_supervised``, ``process_pretrain``) are the same code for in-memory use.

The conversation is split into (source, target) text pieces by rendering message prefixes with the
chat template; each piece is tokenized on its own, so the labels never depend on offsets.
"""
from __future__ import annotations

from llmpipe.data.errors import DataError
from llmpipe.data.report import RowReport
from llmpipe.data.templates import TEMPLATES, template_spans
from llmpipe.data.tools import ToolDataError, render_messages

IGNORE_INDEX = -100


def chat_messages(ex: dict, default_system: str | None = None, tool_format: str = "default",
                  template: str | None = None) -> list[dict]:
    """Plain role/content messages: the example's system prompt (or ``default_system``) with its tools,
    then the turns with tool calls and results rendered in ``tool_format`` (``template``: a named
    template, whose own slots write the call and result turns, llmpipe.data.tools.render_messages)."""
    spec = TEMPLATES.get(template) if template else None
    return render_messages(ex["messages"], ex.get("system") or default_system, ex.get("tools"), tool_format,
                           named=spec is not None, lstrip_tools=bool(spec and spec.tools_lstrip_without_system))


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
    """How many source/target tokens to keep: a short target is kept whole, a short source is kept whole,
    two long ones share the budget in proportion."""
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
                 mask_history: bool = False, eos_id: int | None = None) -> tuple[list[int], list[int], list[str]]:
    """input_ids, labels and notes (what truncation did) for tokenized (source, target) pairs.
    ``eos_id`` (templates with efficient_eos, as LLaMA-Factory does): one EOS closes the sequence, and the
    first prompt token of every turn but the first one processed is labelled EOS."""
    input_ids: list[int] = []
    labels: list[int] = []
    notes: list[str] = []
    total = 0
    budget = cutoff_len - 1 if cutoff_len and eos_id is not None else cutoff_len
    order = list(range(len(pairs)))[::-1] if mask_history else range(len(pairs))
    for k, t in enumerate(order):
        if budget and total >= budget:
            notes.append("turns dropped to fit cutoff_len")
            break
        src, tgt = pairs[t]
        if budget:
            s_len, t_len = infer_seqlen(len(src), len(tgt), budget - total)
            if s_len < len(src):
                notes.append("prompt truncated to fit cutoff_len")
            if t_len < len(tgt):
                notes.append("response truncated to fit cutoff_len")
            src, tgt = src[len(src) - s_len:], tgt[:t_len]  # keep the prompt's end (turn header), response's start
        total += len(src) + len(tgt)
        src_lab = list(src) if train_on_prompt else [IGNORE_INDEX] * len(src)
        if eos_id is not None and k > 0 and src_lab:
            src_lab[0] = eos_id
        tgt_lab = [IGNORE_INDEX] * len(tgt) if mask_history and k > 0 else list(tgt)
        if mask_history:
            input_ids, labels = list(src) + list(tgt) + input_ids, src_lab + tgt_lab + labels
        else:
            input_ids, labels = input_ids + list(src) + list(tgt), labels + src_lab + tgt_lab
    if eos_id is not None:
        input_ids, labels = input_ids + [eos_id], labels + [eos_id]
    return input_ids, labels, sorted(set(notes))


def encode_native(examples: list[dict], tokenizer, *, cutoff_len=None, train_on_prompt=False, mask_history=False,
                  **opts) -> list:
    """``encode_supervised`` with the tokenizer's own chat template (llmpipe.data.native_template); the text
    the template writes after the last answer is kept, untrained (unless ``train_on_prompt``)."""
    from llmpipe.data.native_template import native_pairs

    out = []
    for r in native_pairs(examples, tokenizer, mask_history=mask_history, **opts):
        if isinstance(r, str):
            out.append(r)
            continue
        (pairs, tail), notes = r, []
        input_ids, labels, notes = encode_turns(pairs, cutoff_len, train_on_prompt, mask_history)
        tail = tail[:max(0, cutoff_len - len(input_ids))] if cutoff_len else tail
        input_ids, labels = input_ids + tail, labels + (list(tail) if train_on_prompt else [IGNORE_INDEX] * len(tail))
        if all(x == IGNORE_INDEX for x in labels):
            out.append(f"no trainable token left within cutoff_len={cutoff_len}")
        else:
            out.append((input_ids, labels, notes))
    return out


def encode_supervised(examples: list[dict], tokenizer, *, cutoff_len=None, train_on_prompt=False,
                      mask_history=False, default_system=None, tool_format="default", native=None, template=None,
                      enable_thinking=True, preserve_thinking=False) -> list:
    """Per example: (input_ids, labels, notes), or a string with the reason it cannot be trained on.
    ``native`` ("tools" or "text"): rendered by the tokenizer's own chat template (``encode_native``).
    ``template``: a named template, whose prompt/response spans (thinking included) are LLaMA-Factory's
    (llmpipe.data.templates.template_spans)."""
    if native:
        return encode_native(examples, tokenizer, cutoff_len=cutoff_len, train_on_prompt=train_on_prompt,
                             mask_history=mask_history, default_system=default_system, tool_format=tool_format,
                             native=native, enable_thinking=enable_thinking, preserve_thinking=preserve_thinking)
    pieces, bad = [], {}
    for k, ex in enumerate(examples):
        try:
            msgs = chat_messages(ex, default_system, tool_format, template)
            pieces.append(template_spans(tokenizer, template, msgs, enable_thinking=enable_thinking,
                                         mask_history=mask_history, preserve_thinking=preserve_thinking)
                          if template else turn_pieces(tokenizer, msgs))
        except ToolDataError as e:  # e.g. parallel calls in a format that has none
            pieces.append([])
            bad[k] = str(e)
    eos_id = tokenizer.eos_token_id if template and TEMPLATES[template].efficient_eos else None
    flat = [s for p in pieces for pair in p for s in pair]
    ids = tokenizer(flat, add_special_tokens=False)["input_ids"] if flat else []
    out, pos = [], 0
    for k, p in enumerate(pieces):
        if k in bad:
            out.append(bad[k])
            continue
        pairs = [(ids[pos + 2 * q], ids[pos + 2 * q + 1]) for q in range(len(p))]
        pos += 2 * len(p)
        input_ids, labels, notes = encode_turns(pairs, cutoff_len, train_on_prompt, mask_history, eos_id)
        if all(x == IGNORE_INDEX for x in labels):
            out.append(f"no trainable token left within cutoff_len={cutoff_len}")
        else:
            out.append((input_ids, labels, notes))
    return out


def example_text(ex: dict) -> str:
    return "\n".join(m["content"] for m in ex["messages"])


def encode_pretrain(examples: list[dict], tokenizer, truncate_to: int | None = None) -> list:
    """Per document: (text + eos tokens, labels, notes); cut to ``truncate_to`` tokens when given."""
    eos = tokenizer.eos_token or ""
    docs = tokenizer([example_text(ex) + eos for ex in examples], add_special_tokens=False)["input_ids"]
    out = []
    for d in docs:
        notes = []
        if truncate_to and len(d) > truncate_to:
            d, notes = d[:truncate_to], ["document truncated to cutoff_len"]
        out.append((d, list(d), notes))
    return out


def tokenize_batch(batch: dict, *, tokenizer, kind: str, **opts) -> dict:
    """``datasets.map`` function (batched): internal examples -> input_ids / labels, plus ``_row``,
    ``_bad`` (reason, "" when fine) and ``_notes`` for the loader's report."""
    keys = list(batch)
    examples = [dict(zip(keys, vals)) for vals in zip(*(batch[k] for k in keys))]
    if kind == "pt":
        enc = encode_pretrain(examples, tokenizer, opts.get("truncate_to"))
    else:
        enc = encode_supervised(examples, tokenizer, **opts)
    out = {"input_ids": [], "labels": [], "_row": [], "_bad": [], "_notes": []}
    for ex, e in zip(examples, enc):
        bad = isinstance(e, str)
        out["input_ids"].append([] if bad else e[0])
        out["labels"].append([] if bad else e[1])
        out["_notes"].append([] if bad else e[2])
        out["_bad"].append(e if bad else "")
        out["_row"].append(ex.get("_row", -1))
    return out


def process_supervised(examples: list[dict], tokenizer, *, cutoff_len: int | None = None,
                       train_on_prompt: bool = False, mask_history: bool = False,
                       default_system: str | None = None, tool_format: str = "default",
                       report: RowReport | None = None, indices=None, batch_size: int = 1000) -> list[dict]:
    """Tokenize SFT examples into input_ids / attention_mask / labels (in memory)."""
    report = report if report is not None else RowReport("?")
    idx = list(indices) if indices is not None else list(range(len(examples)))
    out = []
    step = max(1, batch_size or 1000)
    for start in range(0, len(examples), step):
        enc = encode_supervised(examples[start:start + step], tokenizer, cutoff_len=cutoff_len,
                                train_on_prompt=train_on_prompt, mask_history=mask_history,
                                default_system=default_system, tool_format=tool_format)
        for j, e in enumerate(enc):
            if isinstance(e, str):
                report.bad(idx[start + j], e)
                continue
            for n in e[2]:
                report.notes[n] += 1
            out.append({"input_ids": e[0], "attention_mask": [1] * len(e[0]), "labels": e[1]})
    report.kept = len(out)
    return out


def process_pretrain(examples: list[dict], tokenizer, *, cutoff_len: int | None = None, packing: bool = True,
                     report: RowReport | None = None, indices=None) -> list[dict]:
    """Text + eos per document; packed into ``cutoff_len`` blocks or truncated per document (in memory)."""
    from llmpipe.data.packing import shape_pretrain

    report = report if report is not None else RowReport("?")
    docs = [e[0] for e in encode_pretrain(examples, tokenizer)]
    rows, notes = shape_pretrain(docs, cutoff_len, packing)
    report.notes.update(notes)
    report.kept = len(examples)
    return [{"input_ids": r, "attention_mask": [1] * len(r), "labels": list(r)} for r in rows]


def _prompt_msgs(ex: dict, default_system: str | None, drop_last: bool, tool_format: str,
                 template: str | None = None) -> list[dict]:
    """Tools, calls and results rendered as for SFT: in ``tool_format``, through a named template's own
    function/observation turns (``template``)."""
    msgs = chat_messages(ex, default_system, tool_format, template)
    return msgs[:-1] if drop_last else msgs


def _answer(ex: dict, key: str, tool_format: str, template: str | None) -> list[dict]:
    """A chosen/rejected answer as one message; a tool call is written in ``tool_format`` as SFT writes it."""
    if ex.get(f"{key}_role") == "function_call":
        return chat_messages({"messages": [{"role": "function_call", "content": ex[key]}]}, None, tool_format,
                             template)
    return [{"role": "assistant", "content": ex[key]}]


def _bad_rows(examples: list[dict], make) -> list[dict]:
    """``make(ex)`` per example; a row its tool format cannot write (e.g. parallel calls in glm4) is left out
    with the reason in the report (RowReport's ``tool_bad`` list)."""
    rows = []
    for ex in examples:
        try:
            rows.append(make(ex))
        except ToolDataError as e:
            rows.append({"_bad": str(e)})
    return rows


def process_pairwise(examples: list[dict], *, default_system: str | None = None, tool_format: str = "default",
                     template: str | None = None, **_) -> list[dict]:
    """TRL conversational preference rows: prompt messages, chosen / rejected assistant messages."""
    return _bad_rows(examples, lambda ex: {
        "prompt": _prompt_msgs(ex, default_system, False, tool_format, template),
        "chosen": _answer(ex, "chosen", tool_format, template),
        "rejected": _answer(ex, "rejected", tool_format, template)})


def process_kto(examples: list[dict], *, default_system: str | None = None, tool_format: str = "default",
                template: str | None = None, **_) -> list[dict]:
    """TRL conversational unpaired-preference rows: prompt, completion, label."""
    def make(ex):
        msgs = _prompt_msgs(ex, default_system, False, tool_format, template)
        return {"prompt": msgs[:-1], "completion": [msgs[-1]], "label": bool(ex["label"])}
    return _bad_rows(examples, make)


def process_prompt(examples: list[dict], *, default_system: str | None = None, tool_format: str = "default",
                   template: str | None = None, **_) -> list[dict]:
    """Prompt-only rows (generation, RL stages)."""
    return _bad_rows(examples, lambda ex: {"prompt": _prompt_msgs(ex, default_system, False, tool_format, template)})
