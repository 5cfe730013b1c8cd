"""Pre-training text of the built-in ``builtin:tiny`` model (pure python; no torch).

Two kinds of documents, mixed in a fixed, seeded order:

* ``("text", line)``: the bundled tokenizer corpus (data/corpus/*.txt), one line per document, read as
  plain language-model text;
* ``("chat", messages)``: short chat exercises in the model's own ChatML format that teach the chat
  turn structure and general skills over the corpus vocabulary: echoing, copying the first/last/k-th
  word, dropping a word, counting words, successor/predecessor of number words, lower-casing and
  capitalising, reading a stated fact back ("The X is green. What colour is the X?"), picking the word
  of a category, plus Chinese echo/first-word exercises. Single and multi-turn, with and without an
  explicit system prompt.

Nothing here is a demo dataset row: instructions never use the demo tasks' phrasings (see
``DEMO_INSTRUCTIONS``) and colour facts are random per exercise, so the fixed "world" the demo tasks
test (which colour each invented object has) is not taught by the exercises. The exercises deliberately
exclude the demo skills themselves (word reversal, addition, upper-casing): fine-tuning has to learn
those.
"""
from __future__ import annotations

import random
import re

NUMBERS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
           "sixteen seventeen eighteen nineteen twenty").split()
COLOURS = "red blue green yellow purple orange white black brown grey pink".split()
ORDINALS = "first second third fourth fifth".split()
SYSTEMS = ("Answer briefly.", "You are a careful assistant.", "Reply with the answer only.")

# the demo tasks' instructions (llmpipe.data.synthetic): never used by an exercise
DEMO_INSTRUCTIONS = ("Reverse the order of the words.", "Add the numbers and answer in words.",
                     "Write the word in capital letters.", "What is the colour of the", "Which colour is the",
                     "Tell me the colour of the")

_EN_WORD = re.compile(r"^[a-z]{2,12}$")
_ZH_WORD = re.compile(r"^[\u3400-\u9fff]{1,3}$")


class Vocab(list):
    """Sorted words with sampling weights (corpus count ** WEIGHT_POWER)."""

    def __init__(self, counts: dict[str, int], power: float):
        super().__init__(sorted(counts))
        acc, self.cum = 0.0, []
        for w in self:
            acc += counts[w] ** power
            self.cum.append(acc)

    def sample(self, rng: random.Random, k: int) -> list[str]:
        out: list[str] = []
        while len(out) < k:
            w = rng.choices(self, cum_weights=self.cum)[0]
            if w not in out:
                out.append(w)
        return out


WEIGHT_POWER = 0.5
KIND_WEIGHTS = [1] * 13


def vocabulary(corpus: list[tuple[str, bytes]], power: float = WEIGHT_POWER) -> tuple[Vocab, Vocab]:
    """(English words, Chinese words) of the corpus: lower-case words and space-separated CJK words."""
    en: dict[str, int] = {}
    zh: dict[str, int] = {}
    for _, data in corpus:
        for tok in re.split(r"[\s.,;:!?。！？，“”]+", data.decode("utf-8")):
            if _EN_WORD.match(tok):
                en[tok] = en.get(tok, 0) + 1
            elif _ZH_WORD.match(tok):
                zh[tok] = zh.get(tok, 0) + 1
    return Vocab(en, power), Vocab(zh, power)


def _pick(rng: random.Random, words: Vocab, lo: int, hi: int) -> list[str]:
    return words.sample(rng, rng.randint(lo, hi))


def _exercise(rng: random.Random, en: list[str], zh: list[str]) -> tuple[str, str]:
    """One (user message, assistant answer)."""
    kind = rng.choices(range(13), weights=KIND_WEIGHTS)[0]
    if kind == 0:
        ws = _pick(rng, en, 1, 5)
        ins = rng.choice(("Repeat the words.", "Copy the text exactly.", "Say this again.", "Echo the input."))
        return f"{ins}\n{' '.join(ws)}", " ".join(ws)
    if kind == 1:
        ws = _pick(rng, en, 2, 5)
        return f"{rng.choice(('Write the first word.', 'Which word comes first?'))}\n{' '.join(ws)}", ws[0]
    if kind == 2:
        ws = _pick(rng, en, 2, 5)
        return f"{rng.choice(('Write the last word.', 'Which word comes last?'))}\n{' '.join(ws)}", ws[-1]
    if kind == 3:
        ws = _pick(rng, en, 3, 5)
        k = rng.randrange(len(ws))
        return f"Write the {ORDINALS[k]} word.\n{' '.join(ws)}", ws[k]
    if kind == 4:
        ws = _pick(rng, en, 2, 5)
        if rng.random() < 0.5:
            return f"Remove the first word.\n{' '.join(ws)}", " ".join(ws[1:])
        return f"Remove the last word.\n{' '.join(ws)}", " ".join(ws[:-1])
    if kind == 5:
        ws = _pick(rng, en, 1, 7)
        return f"How many words are there? Answer in words.\n{' '.join(ws)}", NUMBERS[len(ws)]
    if kind == 6:
        n = rng.randrange(1, len(NUMBERS) - 1)
        if rng.random() < 0.5:
            return f"What number comes after {NUMBERS[n]}?", NUMBERS[n + 1]
        return f"What number comes before {NUMBERS[n]}?", NUMBERS[n - 1]
    if kind == 7:
        a = rng.randrange(0, 15)
        b = a + rng.randint(1, 4)
        return f"Count from {NUMBERS[a]} to {NUMBERS[b]}.", " ".join(NUMBERS[a:b + 1])
    if kind == 8:
        ws = _pick(rng, en, 1, 3)
        return f"Write the words in small letters.\n{' '.join(w.upper() for w in ws)}", " ".join(ws)
    if kind == 9:
        w = _pick(rng, en, 1, 1)[0]
        return f"Start the word with a capital letter.\n{w}", w.capitalize()
    if kind == 10:
        thing, colour = _pick(rng, en, 1, 1)[0], rng.choice(COLOURS)
        q = rng.choice(("What colour is the {}?", "Say the colour of the {}."))
        return f"The {thing} is {colour}. {q.format(thing)}", rng.choice((f"The {thing} is {colour}.", colour))
    if kind == 11:
        ws = [w for w in _pick(rng, en, 5, 5) if w not in COLOURS and w not in NUMBERS][:rng.randint(2, 4)]
        if rng.random() < 0.5:
            odd, what = rng.choice(COLOURS), "colour"
        else:
            odd, what = rng.choice(NUMBERS), "number"
        ws.insert(rng.randrange(len(ws) + 1), odd)
        return f"Which word is a {what}?\n{' '.join(ws)}", odd
    ws = _pick(rng, zh, 1, 4)
    if rng.random() < 0.5:
        return f"重复下面的词。\n{' '.join(ws)}", " ".join(ws)
    return f"第一个词是什么？\n{' '.join(ws)}", ws[0]


def _chat(rng: random.Random, en: list[str], zh: list[str]) -> list[dict]:
    msgs = [{"role": "system", "content": rng.choice(SYSTEMS)}] if rng.random() < 0.15 else []
    for _ in range(1 if rng.random() < 0.7 else rng.randint(2, 3)):
        user, answer = _exercise(rng, en, zh)
        msgs += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    return msgs


def documents(corpus: list[tuple[str, bytes]], seed: int, n_chats: int, corpus_epochs: int = 1,
              power: float = WEIGHT_POWER) -> list[tuple]:
    """The pre-training documents in training order: corpus lines (``corpus_epochs`` passes) and
    ``n_chats`` chat exercises, shuffled together with ``random.Random(seed)``."""
    rng = random.Random(f"llmpipe-pretrain:{seed}")
    en, zh = vocabulary(corpus, power)
    lines = [ln for _, data in corpus for ln in data.decode("utf-8").splitlines() if ln.strip()]
    docs: list[tuple] = [("text", ln) for _ in range(corpus_epochs) for ln in lines]
    docs += [("chat", _chat(rng, en, zh)) for _ in range(n_chats)]
    rng.shuffle(docs)
    return docs
