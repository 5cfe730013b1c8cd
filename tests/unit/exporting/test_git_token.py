"""The git push to a huggingface.co remote uses the hub token in the same order as every hub access: the
config's model.hf_hub_token (given to the stage in its secret environment) before HF_TOKEN."""
from __future__ import annotations


def test_config_token_wins_over_the_environment_for_huggingface_remotes(monkeypatch):
    from llmpipe.exporting.git_push import git_token

    monkeypatch.delenv("LLMPIPE_GIT_TOKEN", raising=False)
    monkeypatch.setenv("HF_TOKEN", "hf_fromTheEnvironment1")
    remote = "https://huggingface.co/acme/model"
    assert git_token(remote, {"HF_TOKEN": "hf_fromTheConfig12345"}) == "hf_fromTheConfig12345"
    assert git_token(remote) == "hf_fromTheEnvironment1"
    assert git_token("https://example.org/acme/model.git", {"HF_TOKEN": "hf_fromTheConfig12345"}) is None
    monkeypatch.setenv("LLMPIPE_GIT_TOKEN", "git-token-123")
    assert git_token(remote, {"HF_TOKEN": "hf_fromTheConfig12345"}) == "git-token-123"
