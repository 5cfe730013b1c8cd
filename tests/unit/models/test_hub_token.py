"""The precedence of a hub token: model.hf_hub_token (the config, more specific) over HF_TOKEN /
HUGGING_FACE_HUB_TOKEN (the environment), in every place that hands a token to the hub: from_pretrained's
keyword arguments (hub_kwargs, also used for snapshots and Unsloth), the environment of spawned ranks (the
config's token is put into their HF_TOKEN) and the push to the hub."""
from __future__ import annotations

import types

import pytest

from llmpipe.secrets import secret_value


def _model(token=None):
    return types.SimpleNamespace(model_revision="main", trust_remote_code=False, cache_dir=None, hf_hub_token=token)


@pytest.mark.parametrize("config,env,want", [
    ("hf_fromConfig", {"HF_TOKEN": "hf_fromEnv"}, "hf_fromConfig"),
    (None, {"HF_TOKEN": "hf_fromEnv"}, "hf_fromEnv"),
    (None, {"HUGGING_FACE_HUB_TOKEN": "hf_older"}, "hf_older"),
    (None, {}, None),
])
def test_config_token_wins_over_the_environment(monkeypatch, config, env, want):
    from llmpipe.models.hub import hub_kwargs

    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert hub_kwargs(_model(config)).get("token") == want
    assert secret_value("model.hf_hub_token", config) == want


def test_spawned_ranks_and_push_get_the_config_token():
    from omegaconf import OmegaConf

    from llmpipe.exporting.hub_push import hub_token
    from llmpipe.launch.command import worker_env
    from llmpipe.secrets import take_from_config

    secret_env = take_from_config(OmegaConf.create({"model": {"hf_hub_token": "hf_fromConfig"}}))
    env = worker_env({"HF_TOKEN": "hf_fromEnv"}, secret_env, nproc=1, on_gpu=False)
    assert env["HF_TOKEN"] == "hf_fromConfig"
    assert hub_token(secret_env) == "hf_fromConfig"
