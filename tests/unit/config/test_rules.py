"""Every cross-field rule is exercised by its own examples: each ``bad`` override list, composed on top of
the minimal valid config, must produce a Problem of that rule; each ``good`` list must not.

The examples run in a controlled environment: offline (LLMPIPE_OFFLINE=1) with a private hub cache that
holds exactly one fake model, ``llmpipe-test/cached``; the Environment (GPUs, packages) is the rule's own
``env``, so the results do not depend on this machine.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import llmpipe.config.rules  # noqa: F401  (registers the rules)
from llmpipe.config.environment import Environment
from llmpipe.config.flags import flag_table
from llmpipe.config.root import FAMILIES
from llmpipe.pipeline.preflight import RULES, validate

BASE = ["data.dataset=demo_sft"]  # + model=tiny, added by the compose fixtures (tests/unit/conftest.py)
CACHED = "llmpipe-test/cached"

CASES = [pytest.param(r.id, "bad", i, ex, id=f"{r.id}-bad{i}") for r in RULES.values() for i, ex in enumerate(r.bad)]
CASES += [pytest.param(r.id, "good", i, ex, id=f"{r.id}-good{i}") for r in RULES.values() for i, ex in enumerate(r.good)]


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    hub = tmp_path_factory.mktemp("hub")
    snap = hub / ("models--" + CACHED.replace("/", "--")) / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps({"model_type": "llama", "max_position_embeddings": 2048}))
    return hub


@pytest.fixture(autouse=True)
def controlled_env(hub_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setenv("LLMPIPE_OFFLINE", "1")
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)


def _problems(compose, overrides, env):
    cfg = compose(*BASE, *overrides)
    _, problems = validate(cfg, env=env)
    return problems


def _show(problems):
    return "\n".join(f"[{p.rule}] {p.render()}" for p in problems) or "(no problems)"


@pytest.mark.parametrize("rule_id,kind,index,overrides", CASES)
def test_rule_examples(fast_compose, rule_id, kind, index, overrides):
    r = RULES[rule_id]
    problems = _problems(fast_compose, overrides, Environment(**r.env))
    mine = [p for p in problems if p.rule == rule_id]
    if kind == "bad":
        assert mine, f"{rule_id}: {overrides} should be rejected; got:\n{_show(problems)}"
        for p in mine:
            assert p.key and p.message, p
            assert p.allowed or p.fix, f"{rule_id} gives no way out: {p.render()}"
    else:
        assert not mine, f"{rule_id}: {overrides} should pass; got:\n{_show(mine)}"


def test_base_config_is_valid(hydra_compose):
    problems = _problems(hydra_compose, [], Environment())
    assert not problems, _show(problems)


@pytest.mark.parametrize("rule_id", sorted(RULES))
def test_rule_is_documented(rule_id):
    r = RULES[rule_id]
    assert r.bad and r.good, f"{rule_id} needs both bad and good examples"
    assert r.doc, f"{rule_id} needs a docstring (shown by the tools)"
    table = flag_table()
    for key in r.keys:
        if key.split(".", 1)[0] in FAMILIES:
            assert table.by_path(key) is not None, f"{rule_id}: unknown config path {key}"


def test_many_problems_reported_at_once(hydra_compose):
    overrides = [
        "train.stage=ppo",                        # no reward model
        "quantization.method=gptq", "quantization.bit=4",   # cannot quantize on the fly
        "data.streaming=true",                    # no max_steps
        "model.flash_attn=fa2",                   # no GPU
        "launch=fsdp",                            # FSDP on CPU
        "train.bf16=true", "train.fp16=true",
    ]
    problems = _problems(hydra_compose, overrides, Environment(gpu_count=0))
    rules = {p.rule for p in problems}
    expected = {"ppo-reward-model", "quant-on-the-fly-method", "data-streaming", "model-flash-attn-cuda",
                "launch-fsdp-cuda", "train-precision"}
    assert expected <= rules, _show(problems)


def test_rule_crash_is_reported_not_raised(hydra_compose, monkeypatch):
    from llmpipe.pipeline.preflight import Rule

    def boom(cfg, env):
        raise RuntimeError("kaputt")
        yield  # pragma: no cover

    monkeypatch.setitem(RULES, "test-boom", Rule("test-boom", ("train.stage",), boom, [], []))
    problems = _problems(hydra_compose, [], Environment())
    assert [p.rule for p in problems] == ["test-boom"]


def test_none_values_do_not_crash(hydra_compose):
    """Nullable fields set to null everywhere (and a config without dataset) must not crash any rule."""
    table = flag_table()
    nulls = [f"{p.path}=null" for p in table.params() if "| None" in p.type and p.path != "data.dataset"]
    problems = _problems(hydra_compose, nulls + ["data.dataset=null"], Environment())
    crashed = [p for p in problems if "could not be checked" in p.message]
    assert not crashed, _show(crashed)


def test_validation_imports_no_torch(tmp_path):
    code = textwrap.dedent("""
        import sys
        from hydra import compose, initialize_config_dir, initialize_config_module
        from llmpipe.config.resolvers import register_resolvers
        from llmpipe.config.root import register_schema
        from llmpipe.pipeline.preflight import validate
        from llmpipe.resources import conf_path
        register_resolvers(); register_schema()
        where = conf_path()
        ctx = (initialize_config_module("llmpipe.conf", version_base="1.3") if where.startswith("pkg://")
               else initialize_config_dir(where, version_base="1.3"))
        with ctx:
            for extra in ([], ["train.stage=dpo", "data.dataset=demo_pref", "quantization=bnb4", "launch=deepspeed_z3",
                               "galore=layerwise", "infer=vllm", "export.dir=x", "export.quantization_bit=4"]):
                cfg = compose("config", overrides=["model=tiny", "data.dataset=demo_sft", *extra])
                validate(cfg)
        heavy = [m for m in ("torch", "transformers", "datasets", "trl", "peft") if m in sys.modules]
        assert not heavy, heavy
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-3000:]


def test_prequantized_local_checkpoint(hydra_compose, tmp_path):
    """A local checkpoint whose config.json carries a GPTQ quantization_config is recognised as pre-quantized."""
    model = tmp_path / "gptq-model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "llama", "quantization_config": {"quant_method": "gptq"}}))
    env = Environment(gpu_count=2, available_packages=frozenset({"deepspeed", "bitsandbytes"}))
    problems = _problems(hydra_compose, [f"model.name_or_path={model}", "launch=deepspeed_z3", "quantization=bnb4"], env)
    got = {(p.rule, p.key) for p in problems}
    assert ("quant-prequantized", "model.name_or_path") in got, _show(problems)
    assert ("quant-prequantized", "quantization.bit") in got, _show(problems)
    assert not [p for p in problems if p.rule == "model-path"], _show(problems)
    plain = tmp_path / "plain-model"
    plain.mkdir()
    (plain / "config.json").write_text(json.dumps({"model_type": "llama"}))
    problems = _problems(hydra_compose, [f"model.name_or_path={plain}", "launch=deepspeed_z3"], env)
    assert not [p for p in problems if p.rule in ("quant-prequantized", "model-path")], _show(problems)


def test_deepspeed_json_stage_is_read(hydra_compose, tmp_path):
    """ZeRO-3 rules see the stage inside a user's DeepSpeed JSON file, not only the presets."""
    ds = tmp_path / "my_ds.json"
    ds.write_text(json.dumps({"zero_optimization": {"stage": 3}}))
    env = Environment(gpu_count=2, available_packages=frozenset({"deepspeed"}))
    problems = _problems(hydra_compose, ["launch=deepspeed_z2", f"launch.deepspeed={ds}", "train.pure_bf16=true"], env)
    assert [p for p in problems if p.rule == "launch-zero3"], _show(problems)
    assert not [p for p in problems if p.rule == "launch-deepspeed-config"], _show(problems)
