"""BLEU-4, ROUGE-1/2/L and exact match of the predict stage (llmpipe.infer.metrics), on hand-checked
examples; BLEU values agree with NLTK's sentence_bleu with SmoothingFunction().method3 (checked when this
test was written); Chinese goes through jieba's word segmentation."""
from __future__ import annotations

import math

import pytest

from llmpipe.infer import metrics as M


def test_words_segments_chinese_and_keeps_english_words():
    assert M.words("天空是蓝色的。") == ["天空", "是", "蓝色", "的", "。"]
    assert M.words("The zappet is  white.") == ["The", "zappet", "is", "white", "."]


@pytest.mark.parametrize("hyp,ref,expected", [
    # 4/5 unigrams, 2/4 bigrams, 1/3 trigrams, 0/2 four-grams -> smoothed 1/(2*2); equal lengths: no penalty
    ("The zappet is blue.", "The zappet is white.", (0.8 * 0.5 * (1 / 3) * 0.25) ** 0.25),
    ("cloud ocean", "ocean cloud", 0.3535533905932738),               # NLTK method3
    ("大海是绿色的。", "大海是蓝色的。", 0.3021375397356768),            # NLTK method3, jieba words
    ("a b c d e", "a b c d e f g h", 0.5488116360940264),             # brevity penalty exp(1 - 8/5)
    ("seven", "fourteen", 0.0),                                        # no unigram match
    # a one-word exact answer has no 2/3/4-grams: each order is smoothed (1/2, 1/4, 1/8), as in NLTK
    ("APPLE", "APPLE", (1 * 0.5 * 0.25 * 0.125) ** 0.25),
])
def test_bleu4(hyp, ref, expected):
    assert M.bleu4(M.words(hyp), M.words(ref)) == pytest.approx(expected, abs=1e-12)


def test_identical_answers_score_one_everywhere():
    s = M.example_scores("The zappet is white.", "The zappet is white.")
    assert s == {"bleu-4": pytest.approx(1.0), "rouge-1": 1.0, "rouge-2": 1.0, "rouge-l": 1.0, "exact_match": 1.0}


def test_rouge_counts_repeated_words_once_per_occurrence():
    hyp, ref = "a a b".split(), "a b b".split()
    # clipped unigram overlap: a x1, b x1 -> P = R = 2/3
    assert M.rouge_n(hyp, ref, 1) == pytest.approx(2 / 3)
    # bigrams {a a, a b} vs {a b, b b}: overlap 1 of 2
    assert M.rouge_n(hyp, ref, 2) == pytest.approx(0.5)
    # LCS "a b" = 2 -> F1 2/3
    assert M.rouge_l(hyp, ref) == pytest.approx(2 / 3)


def test_rouge_l_respects_order():
    assert M.lcs("cloud ocean forest".split(), "forest ocean cloud".split()) == 1
    assert M.rouge_l(["x"], []) == 0.0


def test_exact_match_ignores_surrounding_and_repeated_whitespace_only():
    assert M.exact_match("  cloud   ocean\n", "cloud ocean")
    assert not M.exact_match("Cloud ocean", "cloud ocean")
    assert not M.exact_match("cloud ocean.", "cloud ocean")


def test_score_is_the_mean_times_100():
    out = M.score(["APPLE", "The zappet is blue.", "天空是蓝色的。"], ["APPLE", "The zappet is white.", "天空是蓝色的。"])
    assert out["predict_samples"] == 3
    assert out["predict_exact_match"] == pytest.approx(200 / 3, abs=1e-3)
    bleu_mid, bleu_one_word = (0.8 * 0.5 * (1 / 3) * 0.25) ** 0.25, (0.5 * 0.25 * 0.125) ** 0.25
    assert out["predict_bleu-4"] == pytest.approx(100 * (bleu_one_word + bleu_mid + 1) / 3, abs=1e-3)
    assert out["predict_rouge-1"] == pytest.approx(100 * (2 + 0.8) / 3, abs=1e-3)
    assert set(out) == {"predict_bleu-4", "predict_rouge-1", "predict_rouge-2", "predict_rouge-l",
                        "predict_exact_match", "predict_samples"}
    assert all(math.isfinite(v) for v in out.values())


def test_score_of_nothing_is_zero():
    assert M.score([], [])["predict_samples"] == 0
