"""The tokenizer's own chat template (``data.template=null``): supervised rows rendered by the model's
Jinja template, with the assistant-only label mask derived from the template itself, never guessed.

* The conversation is given to ``apply_chat_template`` as the template expects it: a system message (the
  example's, else ``data.default_system``), user and assistant turns, tool calls as an assistant message
  with OpenAI ``tool_calls`` (``{"type": "function", "function": {"name", "arguments"}}``), tool results
  as ``role: tool``, and the tool definitions through ``tools=``. With ``data.tool_format`` set, tools and
  calls are written as text in that format instead (llmpipe.data.tools) and the template sees plain turns.
* **Generation markers.** A template with ``{% generation %}`` blocks marks the assistant's tokens itself:
  transformers' ``return_assistant_tokens_mask`` gives the mask of the whole rendering, tokenized in one go.
  Each marked run is one trained answer; the unmarked runs are prompts (the text after the last answer,
  e.g. a closing newline, is not trained).
* **Prefix rendering** otherwise. Per assistant turn ``k``: the prompt is ``messages[:k]`` rendered with
  the generation prompt, the answer is what ``messages[:k+1]`` adds to it. This is only sound when each
  rendering extends the previous one; a template that rewrites history (e.g. Qwen3's, which drops
  ``<think>`` blocks from earlier turns) breaks that, and the row is refused with the reason, except with
  ``data.mask_history=true``, where only the last answer is trained: then the prompt is the whole
  history as the template writes it before that answer, and only that last split has to hold.
* **Template options.** ``data.enable_thinking`` (when not null) and ``data.preserve_thinking`` are passed to
  ``apply_chat_template`` as the variables ``enable_thinking`` / ``preserve_thinking`` when the template reads
  them (Qwen3's reads ``enable_thinking``: false writes the empty thought block into every prompt). A value
  other than the default for a template that does not read it is refused (:func:`template_options`), in
  training and at inference alike.
* Anything the template refuses (``raise_exception``), leaves out (a tool definition, call or result it
  does not write) or marks differently from the conversation's answers makes the row bad, with the reason.

The pieces go through the same truncation and masking as the named templates (llmpipe.data.processors,
``encode_supervised(native=...)``; the loader sets ``native`` when ``data.template`` is null).
"""
from __future__ import annotations

import json
import re

from llmpipe.data.errors import DataError
from llmpipe.data.tools import render_messages

GENERATION = re.compile(r"\{%-?\s*generation\s*-?%\}")
# llmpipe's option -> (the template variable it sets, its default: a value the template need not read)
OPTIONS = {"enable_thinking": ("enable_thinking", True), "preserve_thinking": ("preserve_thinking", False)}


class NativeRowError(ValueError):
    """A conversation the tokenizer's own template cannot render with a sound label mask."""


def template_variables(template) -> set[str]:
    """The variables a Jinja chat template reads (those it does not set itself)."""
    from jinja2 import Environment, TemplateSyntaxError, meta

    if not isinstance(template, str):
        return set()
    try:
        return set(meta.find_undeclared_variables(Environment().parse(template)))
    except TemplateSyntaxError:
        return set()


def template_options(tokenizer, enable_thinking=True, preserve_thinking=False) -> dict:
    """The keyword arguments of ``apply_chat_template`` for llmpipe's template options: each option the
    tokenizer's template reads, when set (enable_thinking null: the template's own default); a non-default
    value the template does not read raises :class:`NativeOptionError` (it could not act)."""
    reads = template_variables(getattr(tokenizer, "chat_template", None))
    out = {}
    for key, value in (("enable_thinking", enable_thinking), ("preserve_thinking", preserve_thinking)):
        var, default = OPTIONS[key]
        if var in reads:
            if value is not None:
                out[var] = value
        elif value != default:
            raise NativeOptionError(f"data.{key}={value} has no effect: the tokenizer's own chat template (data."
                                    f"template=null) does not read {var!r}; drop data.{key}, or set data.template "
                                    "to a named reasoning template (`llmpipe-tools templates`)")
    return out


class NativeOptionError(DataError):
    """A template option the tokenizer's own template does not read (every row would ignore it)."""


def has_generation_markers(template) -> bool:
    return isinstance(template, str) and bool(GENERATION.search(template))


def native_messages(ex: dict, default_system: str | None) -> tuple[list[dict], list[dict] | None]:
    """(messages, tools) as Hugging Face chat templates take them."""
    system = ex.get("system") or default_system
    msgs = [{"role": "system", "content": system}] if system else []
    for m in ex["messages"]:
        if m["role"] == "function_call":
            data = json.loads(m["content"])
            msgs.append({"role": "assistant", "content": data.get("text") or "",
                         "tool_calls": [{"type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                                        for c in data["calls"]]})
        else:
            msgs.append({"role": m["role"], "content": m["content"]})
    tools = [{"type": "function", "function": t} for t in json.loads(ex["tools"])] if ex.get("tools") else None
    return msgs, tools


def _render(tokenizer, msgs, tools, gen: bool, **kw):
    from jinja2 import TemplateError

    kw.setdefault("tokenize", False)
    try:
        return tokenizer.apply_chat_template(msgs, tools=tools, add_generation_prompt=gen, **kw)
    except TemplateError as e:
        raise NativeRowError(f"the tokenizer's chat template refused this conversation: {e}") from None


def _check_written(tokenizer, msgs: list[dict], tools: list[dict] | None, text: str, opts: dict) -> None:
    """Tool definitions, calls and results must change the rendering: a template with no place for them
    would drop them silently (the rendering without them is compared, not a name looked up)."""
    if not (tools or any(m.get("tool_calls") or m["role"] == "tool" for m in msgs)):
        return
    missing = []
    if tools and _render(tokenizer, msgs, None, False, **opts) == text:
        missing.append("the tool definitions")
    no_calls = [{k: v for k, v in m.items() if k != "tool_calls"} for m in msgs]
    if no_calls != msgs and _render(tokenizer, no_calls, tools, False, **opts) == text:
        missing.append("the tool calls")
    no_results = [dict(m, content="") if m["role"] == "tool" else m for m in msgs]
    if no_results != msgs and _render(tokenizer, no_results, tools, False, **opts) == text:
        missing.append("the tool results")
    if missing:
        raise NativeRowError(f"the tokenizer's chat template does not write {' or '.join(missing)}; set "
                             "data.tool_format to write tools as text, or data.template to a named template")


def _marker_pieces(tokenizer, msgs, tools, n_answers: int, opts: dict):
    """(prompt ids, answer ids) per marked run and the unmarked ids after the last one."""
    enc = _render(tokenizer, msgs, tools, False, tokenize=True, return_dict=True, return_assistant_tokens_mask=True,
                  **opts)
    ids, mask = list(enc["input_ids"]), list(enc["assistant_masks"])
    runs: list[tuple[int, list[int]]] = []  # (mask value, ids)
    for i, m in zip(ids, mask):
        if runs and runs[-1][0] == bool(m):
            runs[-1][1].append(i)
        else:
            runs.append((bool(m), [i]))
    if runs and runs[0][0]:
        runs.insert(0, (False, []))
    pairs = [(runs[k][1], runs[k + 1][1]) for k in range(0, len(runs) - 1, 2)]
    tail = runs[-1][1] if len(runs) % 2 else []
    if len(pairs) != n_answers:
        raise NativeRowError(f"the tokenizer's chat template marks {len(pairs)} generation block(s) for "
                             f"{n_answers} assistant turn(s); set data.template to a named template")
    return pairs, tail


def _prefix_pieces(tokenizer, msgs, tools, mask_history: bool, opts: dict) -> list[tuple[str, str]]:
    """(prompt, answer) texts per assistant turn by rendering prefixes (see the module docstring)."""
    turns = [i for i, m in enumerate(msgs) if m["role"] == "assistant"]
    pieces, done = [], ""
    for i in turns:
        prompt = _render(tokenizer, msgs[:i], tools, True, **opts)
        full = _render(tokenizer, msgs[:i + 1], tools, False, **opts)
        if not full.startswith(prompt):
            raise NativeRowError(f"the tokenizer's chat template does not write turn {i} after its generation "
                                 "prompt (the rendering with the answer does not start with the prompt), so the "
                                 "answer cannot be told apart; set data.template to a named template")
        if not prompt.startswith(done):
            if mask_history:  # only the last answer is trained: one split, at the last turn
                last = turns[-1]
                prompt = _render(tokenizer, msgs[:last], tools, True, **opts)
                full = _render(tokenizer, msgs, tools, False, **opts)
                if not full.startswith(prompt):
                    raise NativeRowError("the tokenizer's chat template does not write the last answer after its "
                                         "generation prompt; set data.template to a named template")
                return [(prompt, full[len(prompt):])]
            raise NativeRowError(f"the tokenizer's chat template rewrites earlier turns when turn {i} is added (e.g. "
                                 "it drops <think> blocks from history), so earlier answers cannot be trained as "
                                 "written; use data.mask_history=true (train the last answer only) or set "
                                 "data.template to a named template")
        pieces.append((prompt[len(done):], full[len(prompt):]))
        done = full
    return pieces


def native_row(ex: dict, tokenizer, *, default_system=None, tool_format=None, mask_history=False, opts=None):
    """([(prompt ids, answer ids)], tail ids) of one example rendered by the tokenizer's own template
    (``opts``: :func:`template_options`)."""
    opts = opts or {}
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else ""
    if tool_format:  # tools written as text in data.tool_format; the template sees plain turns
        msgs, tools = render_messages(ex["messages"], ex.get("system") or default_system, ex.get("tools"),
                                      tool_format), None
    else:
        msgs, tools = native_messages(ex, default_system)
    n_answers = sum(1 for m in msgs if m["role"] == "assistant")
    if has_generation_markers(template):
        pairs, tail = _marker_pieces(tokenizer, msgs, tools, n_answers, opts)
        _check_written(tokenizer, msgs, tools, _render(tokenizer, msgs, tools, False, **opts), opts)
        return pairs, tail
    pieces = _prefix_pieces(tokenizer, msgs, tools, mask_history, opts)
    _check_written(tokenizer, msgs, tools, _render(tokenizer, msgs, tools, False, **opts), opts)
    flat = [s for p in pieces for s in p]
    ids = tokenizer(flat, add_special_tokens=False)["input_ids"]
    return [(ids[2 * k], ids[2 * k + 1]) for k in range(len(pieces))], []


def native_pairs(examples: list[dict], tokenizer, *, default_system=None, tool_format=None, mask_history=False,
                 native="tools", enable_thinking=True, preserve_thinking=False) -> list:
    """Per example: ([(prompt ids, answer ids)], tail ids), or the reason it cannot be trained on.
    ``native="tools"``: the template writes tools, calls and results itself; ``"text"``: they are written
    as text in ``tool_format`` (llmpipe.data.processors does the truncation and the labels)."""
    from llmpipe.data.tools import ToolDataError

    opts = template_options(tokenizer, enable_thinking, preserve_thinking)   # NativeOptionError: the whole dataset
    out = []
    for ex in examples:
        try:
            out.append(native_row(ex, tokenizer, default_system=default_system, mask_history=mask_history,
                                  tool_format=None if native == "tools" else tool_format, opts=opts))
        except (NativeRowError, ToolDataError) as e:
            out.append(str(e))
    return out
