"""Similarity metrics of generated answers against references: BLEU-4, ROUGE-1/2/L and exact match.

Text is split into words by jieba, which segments Chinese into words and leaves English words, numbers and
punctuation whole; whitespace is dropped. Per example:

* BLEU-4: sentence BLEU with uniform weights over 1..4-gram clipped precisions, the brevity penalty, and
  smoothing "method 3" of Chen & Cherry (2014) (as in NLTK and LLaMA-Factory): an n-gram order with no match
  counts 1 / (2^k * candidates), k = 1, 2, ... for each such order in turn. No unigram match gives 0.
* ROUGE-N: F1 of the clipped n-gram overlap; ROUGE-L: F1 of the longest common subsequence.
* exact match: 1 when the answer equals the reference after trimming and collapsing whitespace.

The dataset scores are the means over examples, times 100 (exact match: percent of examples).
"""
from __future__ import annotations

import math
import re
from collections import Counter
from typing import Iterable, Sequence

_WS = re.compile(r"\s+")


def words(text: str) -> list[str]:
    """Word tokens of ``text`` (jieba segmentation, whitespace dropped)."""
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    return [w for w in jieba.cut(text) if w.strip()]


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def bleu4(hyp: Sequence[str], ref: Sequence[str]) -> float:
    """Sentence BLEU-4 in [0, 1] with smoothing method 3."""
    if not hyp or not ref:
        return 0.0
    logs, k = [], 0
    for n in range(1, 5):
        cand, refs = _ngrams(hyp, n), _ngrams(ref, n)
        matches = sum(min(c, refs[g]) for g, c in cand.items())
        total = max(1, sum(cand.values()))
        if matches == 0:
            if n == 1:
                return 0.0
            k += 1
            logs.append(math.log(1.0 / (2 ** k * total)))
        else:
            logs.append(math.log(matches / total))
    bp = 1.0 if len(hyp) > len(ref) else math.exp(1 - len(ref) / len(hyp))
    return bp * math.exp(sum(logs) / 4)


def _f1(overlap: int, n_hyp: int, n_ref: int) -> float:
    if overlap == 0 or n_hyp == 0 or n_ref == 0:
        return 0.0
    p, r = overlap / n_hyp, overlap / n_ref
    return 2 * p * r / (p + r)


def rouge_n(hyp: Sequence[str], ref: Sequence[str], n: int) -> float:
    h, r = _ngrams(hyp, n), _ngrams(ref, n)
    return _f1(sum((h & r).values()), sum(h.values()), sum(r.values()))


def lcs(a: Sequence[str], b: Sequence[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(hyp: Sequence[str], ref: Sequence[str]) -> float:
    return _f1(lcs(hyp, ref), len(hyp), len(ref))


def normalize(text: str) -> str:
    return _WS.sub(" ", text).strip()


def exact_match(pred: str, ref: str) -> bool:
    return normalize(pred) == normalize(ref)


def example_scores(pred: str, ref: str) -> dict[str, float]:
    hyp, gold = words(pred), words(ref)
    return {"bleu-4": bleu4(hyp, gold), "rouge-1": rouge_n(hyp, gold, 1), "rouge-2": rouge_n(hyp, gold, 2),
            "rouge-l": rouge_l(hyp, gold), "exact_match": float(exact_match(pred, ref))}


def score(predictions: Iterable[str], references: Iterable[str], prefix: str = "predict_") -> dict[str, float]:
    """Mean scores x 100 over the examples: ``{prefix}bleu-4``, ``rouge-1/2/l``, ``exact_match``, ``samples``."""
    totals: Counter = Counter()
    n = 0
    for pred, ref in zip(predictions, references):
        totals.update(example_scores(pred, ref))
        n += 1
    out = {f"{prefix}{k}": round(100 * totals[k] / n, 4) if n else 0.0
           for k in ("bleu-4", "rouge-1", "rouge-2", "rouge-l", "exact_match")}
    out[f"{prefix}samples"] = n
    return out
