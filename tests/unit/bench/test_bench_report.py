"""The harness's results table: medians per tool, ratios, targets met or missed, the Markdown writer."""
from __future__ import annotations

from bench import analyze, report

STATS = {"sft": {"mean": 100.0, "tokens": 51200}, "pref": {"pair_mean": 200.0}}
CFG = dict(vocab_size=4096, hidden_size=256, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4,
           intermediate_size=688)


def rec(measure, tool, rep, **kw):
    base = {"measure": measure, "tool": tool, "rep": rep, "rc": 0, "wall_s": 1.0, "cpu_s": 1.0, "peak_rss_mib": 500,
            "load_before": 0.5, "traceback": False}
    return {**base, **kw}


def records():
    out = []
    for rep, (llm_rt, lf_rt) in enumerate([(5.0, 6.0), (4.0, 6.6), (6.0, 7.0)]):
        out.append(rec("sft_matched", "llmpipe", rep, train_runtime=llm_rt, steps=30, wall_s=9.0,
                       loss={5: 8.3, 10: 8.2}))
        out.append(rec("sft_matched", "lf", rep, train_runtime=lf_rt, steps=30, wall_s=15.0, peak_rss_mib=700,
                       loss={5: 8.31, 10: 8.2}))
        out.append(rec("reject:typo_key", "llmpipe", rep, rc=2, wall_s=0.3 + rep / 10))
        out.append(rec("reject:typo_key", "lf", rep, rc=1, wall_s=7.5, traceback=True))
    out.append(rec("cached_rerun", "llmpipe", 0, wall_s=2.0))
    return out


def test_enrich_computes_tokens_per_second_and_mfu():
    rs = records()
    analyze.enrich(rs, STATS, CFG, peak=1e11, device="cpu")
    first = rs[0]
    assert first["tok_s"] == 100.0 * 4 * 30 / 5.0
    assert 0 < first["mfu"] < 1
    assert first["noisy"] is False


def test_table_medians_ratios_and_targets():
    rs = records()
    analyze.enrich(rs, STATS, CFG, peak=1e11, device="cpu")
    rows = {r["measure"]: r for r in analyze.table(rs)}
    tok = rows["SFT LoRA tokens/s, matched settings"]
    assert tok["llmpipe"] == 100.0 * 4 * 30 / 5.0 and tok["lf"] == 100.0 * 4 * 30 / 6.6
    assert abs(tok["ratio"] - 6.6 / 5.0) < 1e-9 and tok["met"] is True      # 1.32 >= 1.2
    rej = rows["reject bad config `typo_key`"]
    assert abs(rej["llmpipe"] - 0.4) < 1e-9 and rej["met"] is True and "exit 2" in rej["note"]
    assert rows["peak RSS, SFT matched"]["met"] is True
    assert rows["whole command wall, SFT matched"]["met"] is True            # 9 s <= 10 s
    cached = rows["cached re-run of the finished SFT pipeline"]
    assert cached["llmpipe"] == 2.0 and cached["lf"] == 15.0 and cached["met"] is True


def test_a_missed_target_says_by_how_much_and_the_markdown_has_every_row():
    rs = records()
    for r in rs:
        if r["measure"] == "sft_matched" and r["tool"] == "llmpipe":
            r["train_runtime"] = 6.6   # ratio 1.0 against >= 1.2
    analyze.enrich(rs, STATS, CFG, peak=1e11, device="cpu")
    rows = analyze.table(rs)
    tok = next(r for r in rows if r["measure"].startswith("SFT LoRA tokens/s"))
    assert tok["met"] is False
    assert "17 % short" in report._shortfall(tok)
    md = report.markdown_table(rows)
    assert md.count("\n") == len(rows) + 2
    assert "| **no** |" in md and "≥ 1.2× LF" in md


def test_curves_compare_the_first_runs():
    rs = records()
    c = analyze.curves(rs)["sft_matched"]
    assert c["steps"] == [5, 10] and abs(c["max_rel_diff"] - 0.01 / 8.31) < 1e-9


def test_chart_is_written(tmp_path):
    rs = records()
    analyze.enrich(rs, STATS, CFG, peak=1e11, device="cpu")
    out = report.chart(analyze.table(rs), tmp_path / "chart.png", "test")
    assert out is not None and out.stat().st_size > 1000


def test_the_whole_document_renders(tmp_path):
    rs = records()
    rs.append(rec("sweep_2x2", "llmpipe", 0, wall_s=30.0))
    rs.append(rec("sweep_independent", "llmpipe", 0, wall_s=60.0))
    rs.append(rec("dpo", "lf", 0, wall_s=16.0, train_runtime=8.0, steps=20, loss={5: 0.69}))
    analyze.enrich(rs, STATS, CFG, peak=1e11, device="cpu")
    rows = analyze.table(rs)
    data = {"command": "python -m bench --quick", "started": "now", "runs": 1, "device": "cpu", "complete": False,
            "machine": {"cpu": "X", "cores": 2, "ram_gib": 23, "python": "3.11", "load_avg": [1, 1, 1]},
            "peak": {"torch": "2.13", "threads": 2, "interop_threads": 2, "dtype": "float32", "peak_flops": 1e11,
                     "square": {"1024": 1e11}, "model_shapes": {"mlp_up": 5e10}},
            "load_before": 0.5, "load_after": 0.7, "noise": analyze.noise(rs), "rows": rows,
            "lf": {"versions": {"llamafactory": "0.9.5"}}, "curves": analyze.curves(rs), "profile": "- imports: 10 %",
            "findings": "Some finding.", "definitions": "- defs", "reused": {"lf": True, "groups": ["sweep"], "from": "x"}}
    md = report.markdown(data)
    sweep = next(r for r in rows if r["measure"].startswith("2×2 sweep"))
    assert sweep["met"] is True and sweep["lf"] == 64.0          # 30 <= 0.6 x 60; LF: 4 x its DPO wall
    for text in ("partial", "Records of LLaMA-Factory, sweep were reused", "## Loss curves", "## Profile",
                 "Some finding.", "100.0 GFLOP/s", "mlp_up 50"):
        assert text in md
