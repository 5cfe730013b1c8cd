"""The benchmark harness's arithmetic: medians, ratios, tokens/s, FLOPs per token, MFU, targets, loss agreement."""
from __future__ import annotations

import json

import pytest

from bench import stats

BENCH = dict(vocab_size=4096, hidden_size=256, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4,
             intermediate_size=688)
QWEN05 = dict(vocab_size=151936, hidden_size=896, num_hidden_layers=24, num_attention_heads=14,
              num_key_value_heads=2, intermediate_size=4864)


def test_median_ignores_missing_values():
    assert stats.median([3.0, None, 1.0, 2.0]) == 2.0
    assert stats.median([4.0, 1.0]) == 2.5
    assert stats.median([None]) is None


def test_ratio_is_first_over_second_and_safe():
    assert stats.ratio(3.0, 2.0) == 1.5
    assert stats.ratio(None, 2.0) is None and stats.ratio(1.0, 0) is None


def test_tokens_per_second_follows_the_baseline_definition():
    # lf-baseline: 113.00 tokens/row x 4 x 30 steps / 6.566 s = 2065 tok/s
    assert stats.tokens_per_s(113.0, 4, 30, 6.566) == pytest.approx(2065, abs=1)
    assert stats.tokens_per_s(113.0, 4, 30, None) is None


def test_matmul_params_of_the_bench_model():
    # 4,999,424 parameters in all = matmuls + embedding (4096 x 256) + norms (9 x 256)
    n = stats.matmul_params(BENCH)
    assert n == 3_948_544
    assert n + 4096 * 256 + 9 * 256 == 4_999_424


def test_matmul_params_of_the_qwen_shape_match_its_model_card():
    # Qwen2.5-0.5B: 0.36B non-embedding parameters (+ the tied 151936 x 896 head)
    n = stats.matmul_params(QWEN05) - 151936 * 896
    assert round(n / 1e6) == 358


def test_flops_per_token_is_6n_plus_attention_and_dpo_adds_a_reference_forward():
    n = stats.matmul_params(BENCH)
    f = stats.flops_per_token(BENCH, 100)
    assert f == 6 * n + 12 * 4 * 256 * 100
    ref = stats.flops_per_token(BENCH, 100, reference_forward=True)
    assert ref - f == 2 * n + 4 * 4 * 256 * 100


def test_mfu():
    assert stats.mfu(1000.0, 2e7, 1e11) == pytest.approx(0.2)
    assert stats.mfu(None, 2e7, 1e11) is None and stats.mfu(1.0, 1.0, None) is None


def test_noisy_flags_runs_started_under_load():
    assert stats.noisy({"load_before": 1.6}) and not stats.noisy({"load_before": 1.4}) and not stats.noisy({})


@pytest.mark.parametrize("value,op,bound,want", [(0.4, "<", 0.5, True), (0.5, "<", 0.5, False),
                                                 (1.2, ">=", 1.2, True), (3.1, "<=", 3, False), (None, "<", 1, None)])
def test_check(value, op, bound, want):
    assert stats.check(value, op, bound) is want


def test_loss_agreement_takes_common_steps_and_the_worst_relative_difference():
    a = {5: 8.0, 10: 7.0, 15: 6.0}
    b = {5: 8.0, 10: 7.7, 20: 1.0}
    got = stats.loss_agreement(a, b)
    assert got["steps"] == [5, 10] and got["worst_step"] == 10
    assert got["max_rel_diff"] == pytest.approx(0.7 / 7.7)
    assert stats.loss_agreement({1: 1.0}, {2: 1.0})["max_rel_diff"] is None


def test_fmt():
    assert stats.fmt(None) == "—"
    assert stats.fmt(0.1234, "%") == "12.3 %"
    assert stats.fmt(1.5, "x") == "1.50×"
    assert stats.fmt(2065.4) == "2,065" and stats.fmt(15.35) == "15.3" and stats.fmt(0.61) == "0.61"
    json.dumps(stats.fmt(1.0))
