"""llmpipe.secrets knows the secret parameters without reading the schema (it sits below config); the schema's
``secret=True`` parameters and its table must stay the same set."""
import pytest

from llmpipe import secrets
from llmpipe.config.flags import flag_table


def test_the_secret_table_names_exactly_the_schema_secret_parameters():
    schema = {p.path for p in flag_table().params() if p.meta.secret}
    assert set(secrets.secret_paths()) == schema


def test_a_secret_set_in_the_config_is_redacted_from_text():
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"model": {"hf_hub_token": "hf_abcdefghijklmnop"}})
    env = secrets.take_from_config(cfg)
    assert env == {"HF_TOKEN": "hf_abcdefghijklmnop"}
    assert "hf_abcdefghijklmnop" not in secrets.redact_text("token hf_abcdefghijklmnop here")


SECRET = "hf_FAKEsecret1234567890"


def test_secret_keys_are_redacted_by_key_even_before_the_value_is_known():
    for text, want in [
        ("#0 : +recipe=demo model.hf_hub_token=abcd1234 lora.rank=4", "model.hf_hub_token=<redacted> lora.rank=4"),
        ("  hf_hub_token: abcd1234\n  ms_hub_token: null", "hf_hub_token: <redacted>\n  ms_hub_token: null"),
        ("{'om_hub_token': 'abcd1234'}", "{'om_hub_token': '<redacted>'}"),
    ]:
        assert want in secrets.redact_text(text)
    assert secrets.redact_text("hf_hub_token: ${oc.env:X}") == "hf_hub_token: ${oc.env:X}"


def test_command_line_secret_values_are_remembered():
    argv = [f"+model.hf_hub_token={SECRET}", "'model.ms_hub_token=\"ms_abcdef123\"'", "lora.rank=4",
            "model.om_hub_token=${oc.env:X}"]
    assert {SECRET, "ms_abcdef123"} <= set(secrets.secret_override_values(argv))
    assert "${oc.env:X}" not in secrets.secret_override_values(argv)


def test_install_redacts_log_records_and_both_streams(monkeypatch, tmp_path):
    import io
    import logging
    import sys

    old_factory = logging.getLogRecordFactory()
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    try:
        secrets.install([f"model.hf_hub_token={SECRET}"])
        secrets.install([])   # idempotent: one wrapper, one factory
        assert isinstance(sys.stdout, secrets.RedactingStream) and sys.stdout._stream is out
        print(f"job: model.hf_hub_token={SECRET} and {SECRET}")
        print(SECRET, file=sys.stderr)
        logger = logging.getLogger("llmpipe_test_secrets")
        handler = logging.FileHandler(tmp_path / "job.log")   # a handler without any filter, as Hydra's could be
        logger.addHandler(handler)
        logger.warning("token %s", SECRET)
        handler.close()
    finally:
        logging.setLogRecordFactory(old_factory)
    assert SECRET not in out.getvalue() + err.getvalue() and "<redacted>" in out.getvalue()
    assert SECRET not in (tmp_path / "job.log").read_text() and "token <redacted>" in (tmp_path / "job.log").read_text()


def test_sweep_results_and_summary_never_hold_a_secret(tmp_path):
    from llmpipe.pipeline import sweep

    secrets.remember([SECRET])
    sweep.append_row(tmp_path, {"job": 0, "overrides": f"+recipe=demo,model.hf_hub_token={SECRET},lora.rank=4",
                                "objective": "eval_loss", "value": 0.5, "stages_ran": 1, "stages_cached": 0,
                                "metrics": {"train/x": 1}, "job_dir": f"/tmp/{SECRET}"})
    text = (tmp_path / sweep.RESULTS).read_text()
    assert SECRET not in text and "hf_hub_token" not in text and "+recipe=demo,lora.rank=4" in text
    # a table written before (or by another tool) is redacted when it is printed
    with open(tmp_path / sweep.RESULTS, "a") as f:
        f.write(f'1,"model.hf_hub_token={SECRET}",eval_loss,0.1,1,0,{{}},x\n')
    summary = sweep.summarize(tmp_path)
    assert SECRET not in summary and "best (lowest eval_loss): model.hf_hub_token=<redacted>" in summary


def test_problems_and_composition_errors_never_show_a_secret(capsys):
    from llmpipe.config.diagnose import explain_composition_failure
    from llmpipe.problems import Problem, format_problems

    text = format_problems([Problem("model.hf_hub_tokn", "abcd-not-known-yet", "not a parameter"),
                            Problem("data.x", f"say {SECRET}", "bad"), Problem("model.hf_hub_token", 5, "wrong type")])
    assert "abcd-not-known-yet" not in text and SECRET not in text and "<redacted>" in text
    explain_composition_failure([f"model.hf_hub_tokn={SECRET}", "+model.hf_hub_token=1"])
    assert SECRET not in capsys.readouterr().err


# --- Item 12: ${oc.env:...} only for allowlisted, non-secret variables --------------------------------------------

def test_env_interpolation_is_allowlisted(monkeypatch):
    from omegaconf import OmegaConf

    from llmpipe.config import resolvers

    resolvers.register_resolvers()
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setenv("LLMPIPE_TEST_HARMLESS", "ok")
    monkeypatch.setenv("LLMPIPE_CACHE", "/tmp/c")
    monkeypatch.delenv(resolvers.ENV_ALLOWED_VAR, raising=False)
    cfg = OmegaConf.create({"a": "${oc.env:LLMPIPE_CACHE}", "b": "${oc.env:MASTER_PORT,29500}",
                            "c": "${oc.env:LLMPIPE_TEST_HARMLESS}"})
    assert cfg.a == "/tmp/c" and cfg.b == "29500"
    with pytest.raises(Exception, match="LLMPIPE_ALLOWED_ENV=LLMPIPE_TEST_HARMLESS"):
        _ = cfg.c
    monkeypatch.setenv(resolvers.ENV_ALLOWED_VAR, "LLMPIPE_TEST_HARMLESS,HF_TOKEN,MY_API_KEY")
    assert cfg.c == "ok"
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "MODELSCOPE_API_TOKEN", "MODELERS_API_TOKEN", "MY_API_KEY",
                 "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD"):   # never, not even when "allowed"
        with pytest.raises(Exception, match=f"{name} may hold a secret"):
            _ = OmegaConf.create({"x": f"${{oc.env:{name},d}}"}).x


def test_builtin_env_allowlist_covers_llmpipes_own_config():
    import re
    from pathlib import Path

    from llmpipe.config import resolvers

    root = Path(__file__).resolve().parents[2]
    files = list((root / "conf").rglob("*.yaml")) + list((root / "llmpipe" / "config" / "families").glob("*.py"))
    used = {m for f in files for m in re.findall(r"oc\.env:([A-Za-z_][A-Za-z0-9_]*)", f.read_text())}
    assert used and used == set(resolvers.BUILTIN_ENV)


def _compose(*overrides):
    from llmpipe.config.compose import compose

    return compose(["model=tiny", "data.dataset=demo_sft", "train.do_train=true", *overrides])


def test_refused_env_and_copied_secrets_are_preflight_problems(monkeypatch):
    from llmpipe.config.rules.safety import env_problems
    from llmpipe.pipeline.preflight import validate

    monkeypatch.setenv("HF_TOKEN", SECRET)
    [p] = env_problems(_compose("data.default_system=${oc.env:HF_TOKEN}"))
    assert p.key == "data.default_system" and "HF_TOKEN may hold a secret" in p.message
    assert env_problems(_compose()) == []
    # the second line: a secret's value copied into any other field (here through an interpolation)
    _, problems = validate(_compose(f"model.hf_hub_token={SECRET}", "data.default_system=${model.hf_hub_token}"))
    [p] = [p for p in problems if p.rule == "secret-outside-secret-field"]
    assert p.key == "data.default_system" and SECRET not in p.render()
    _, problems = validate(_compose(f"data.default_system=say {SECRET}"))   # the environment's token, pasted
    assert [p.key for p in problems if p.rule == "secret-outside-secret-field"] == ["data.default_system"]
