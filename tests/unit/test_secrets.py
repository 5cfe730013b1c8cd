"""llmpipe.secrets knows the secret parameters without reading the schema (it sits below config); the schema's
``secret=True`` parameters and its table must stay the same set."""
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
