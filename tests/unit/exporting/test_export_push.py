"""Publishing an export (no torch): commits on a local bare git repository, credentials that never reach argv,
the Hub upload (token from the environment), and what happens offline or unreachable."""
from __future__ import annotations

import os
import subprocess

import pytest

from llmpipe.exporting import git_push, hub_push
from llmpipe.exporting.errors import PushError

TOKEN = "hf_PushTestToken0123456789abcdef"


def _git(*args, cwd=None):
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def _export(folder, text="v1"):
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "README.md").write_text(f"# model {text}")
    (folder / "llmpipe-export.json").write_text('{"fingerprint": "abc"}')
    return folder


def test_push_to_a_bare_repository_commits_on_top(tmp_path):
    remote = tmp_path / "remote.git"
    _git("init", "-q", "--bare", str(remote))
    src = _export(tmp_path / "export")
    first = git_push.push(src, str(remote), work=tmp_path / "w", message="first", log=print)
    assert first["new_commit"] and first["branch"] == "main"
    assert _git("--git-dir", str(remote), "rev-parse", "main") == first["commit"]
    files = _git("--git-dir", str(remote), "ls-tree", "--name-only", "main").split()
    assert files == ["README.md", "config.json", "llmpipe-export.json"]
    again = git_push.push(src, str(remote), work=tmp_path / "w", message="same", log=print)
    assert not again["new_commit"] and again["commit"] == first["commit"]   # identical export: no commit
    (src / "config.json").unlink()
    _export(src, "v2")
    (src / "config.json").unlink()
    second = git_push.push(src, str(remote), work=tmp_path / "w", message="second", log=print)
    assert _git("--git-dir", str(remote), "rev-parse", "main^") == first["commit"]
    assert _git("--git-dir", str(remote), "ls-tree", "--name-only", "main").split() == ["README.md", "llmpipe-export.json"]
    assert _git("--git-dir", str(remote), "show", "main:README.md") == "# model v2"
    assert second["commit"] != first["commit"]


def test_push_to_a_new_path_creates_a_bare_repository(tmp_path):
    out = git_push.push(_export(tmp_path / "export"), str(tmp_path / "new" / "repo.git"), work=tmp_path / "w",
                        message="m", log=print)
    clone = tmp_path / "clone"
    _git("clone", "-q", str(tmp_path / "new" / "repo.git"), str(clone))
    assert (clone / "config.json").is_file() and _git("rev-parse", "HEAD", cwd=clone) == out["commit"]


def test_push_to_a_folder_that_is_not_a_repository(tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "x").write_text("x")
    with pytest.raises(PushError, match="not a git repository"):
        git_push.push(_export(tmp_path / "export"), str(tmp_path / "plain"), work=tmp_path / "w", message="m", log=print)


def test_credentials_live_in_the_environment_not_in_argv_or_files(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMPIPE_GIT_TOKEN", TOKEN)
    remote = "https://git.example.com/me/model.git"
    assert git_push.git_token(remote) == TOKEN
    env = git_push.git_env(tmp_path, git_push.git_token(remote))
    script = env["GIT_ASKPASS"]
    assert TOKEN not in open(script).read() and env["GIT_TERMINAL_PROMPT"] == "0"
    ask = lambda prompt: subprocess.run([script, prompt], env=env, capture_output=True, text=True).stdout.strip()  # noqa: E731
    assert ask("Password for 'https://llmpipe@git.example.com': ") == TOKEN
    assert ask("Username for 'https://git.example.com': ") == "llmpipe"
    monkeypatch.delenv("LLMPIPE_GIT_TOKEN")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert git_push.git_token("https://huggingface.co/me/model") == TOKEN
    assert git_push.git_token(remote) is None          # the Hub token only goes to the Hub
    assert git_push.safe_url("https://me:pw@example.com:8443/x.git") == "https://example.com:8443/x.git"


class FakeApi:
    calls: list = []

    def __init__(self, endpoint=None, token=None):
        FakeApi.calls.append(("init", endpoint, token))

    def create_repo(self, repo_id, **kw):
        FakeApi.calls.append(("create_repo", repo_id, kw))

    def upload_folder(self, **kw):
        FakeApi.calls.append(("upload_folder", kw))
        return type("Commit", (), {"oid": "c0ffee", "commit_url": f"https://hub.example/{kw['repo_id']}/commit/c0ffee"})()


def test_hub_push_uses_the_environment_token(tmp_path, monkeypatch):
    import huggingface_hub

    FakeApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    for var in ("LLMPIPE_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    src = _export(tmp_path / "export")
    out = hub_push.push(src, "me/model", token=hub_push.hub_token(), message="m", log=print)
    assert out["commit"] == "c0ffee" and out["repo"] == "me/model"
    assert FakeApi.calls[0][2] == TOKEN
    upload = dict(FakeApi.calls[2][1])
    assert upload["folder_path"] == str(src) and upload["repo_id"] == "me/model"
    assert TOKEN not in repr(upload)


def test_hub_push_offline_unreachable_or_without_token(tmp_path, monkeypatch):
    src = _export(tmp_path / "export")
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PushError, match="offline.*HF_HUB_OFFLINE.*untouched"):
        hub_push.push(src, "me/model", token=TOKEN, message="m", log=print)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("LLMPIPE_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    with pytest.raises(PushError, match="HF_TOKEN in the environment"):
        hub_push.push(src, "me/model", token=None, message="m", log=print)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")      # nothing listens there
    with pytest.raises(PushError, match="could not reach the Hugging Face Hub") as e:
        hub_push.push(src, "me/model", token=TOKEN, message="m", log=print)
    assert TOKEN not in str(e.value) and "untouched" in str(e.value)
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before
    assert os.listdir(src) and not list(tmp_path.glob(".export*"))
