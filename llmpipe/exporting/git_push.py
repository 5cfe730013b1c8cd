"""Publish a finished export folder as one commit on branch ``main`` of a git remote (export.push_to): a URL
(https, ssh, file) or a local path; a local path that does not exist becomes a new bare repository.

The commit goes on top of the branch when the remote has it (a re-export is a new commit, unchanged files
are not re-sent; an identical export adds no commit). Credentials never travel on argv: for https the
token is read from LLMPIPE_GIT_TOKEN (or HF_TOKEN for huggingface.co) by a GIT_ASKPASS script that holds no
secret itself; ssh keys and the user's credential helpers work as usual. Large-file storage (git-lfs) is not
set up: to publish on the Hugging Face Hub use export.hub_model_id.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from llmpipe.exporting.errors import PushError
from llmpipe.processes import dies_with_parent

BRANCH = "main"
_SCP = re.compile(r"^[\w.\-]+@[\w.\-]+:")
ASKPASS = """#!/bin/sh
# llmpipe: answers git's credential prompts from the environment (holds no secret itself)
case "$1" in
  Username*) printf '%s\\n' "${LLMPIPE_GIT_USERNAME:-llmpipe}" ;;
  *) printf '%s\\n' "$LLMPIPE_GIT_TOKEN" ;;
esac
"""


def is_local(remote: str) -> bool:
    return "://" not in remote and not _SCP.match(remote)


def safe_url(remote: str) -> str:
    """The remote without any user:password part (for logs and records)."""
    if "://" not in remote:
        return remote
    parts = urlsplit(remote)
    host = parts.hostname or ""
    return parts._replace(netloc=host + (f":{parts.port}" if parts.port else "")).geturl()


def git_token(remote: str, secret_env: dict[str, str] | None = None) -> str | None:
    """LLMPIPE_GIT_TOKEN; for a huggingface.co remote, else the hub token (the config's model.hf_hub_token, which
    reaches the stage in ``secret_env``, before HF_TOKEN: the same order as every other hub access)."""
    from llmpipe.exporting.hub_push import hub_token

    token = os.environ.get("LLMPIPE_GIT_TOKEN")
    if not token and "huggingface.co" in (urlsplit(remote).hostname or ""):
        token = hub_token(secret_env)
    return token or None


def git_env(work: Path, token: str | None) -> dict[str, str]:
    """Environment for git: no prompts; the token (if any) only in LLMPIPE_GIT_TOKEN for the askpass script."""
    env = {k: v for k, v in os.environ.items() if k != "LLMPIPE_GIT_TOKEN"}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_AUTHOR_NAME=env.get("GIT_AUTHOR_NAME", "llmpipe"),
               GIT_AUTHOR_EMAIL=env.get("GIT_AUTHOR_EMAIL", "llmpipe@localhost"),
               GIT_COMMITTER_NAME=env.get("GIT_COMMITTER_NAME", "llmpipe"),
               GIT_COMMITTER_EMAIL=env.get("GIT_COMMITTER_EMAIL", "llmpipe@localhost"))
    if token:
        script = Path(work) / "askpass.sh"
        script.write_text(ASKPASS)
        script.chmod(0o700)
        env.update(GIT_ASKPASS=str(script), LLMPIPE_GIT_TOKEN=token)
    return env


def _git(args: list[str], cwd: Path, env: dict[str, str], what: str) -> str:
    from llmpipe.secrets import redact_text

    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          preexec_fn=dies_with_parent())   # a killed llmpipe leaves no git (a hung push) running
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        detail = redact_text(lines[-1] if lines else f"exit {proc.returncode}")
        raise PushError(f"git could not {what}: {detail}")
    return proc.stdout.strip()


def _prepare_local(remote: str, env: dict[str, str], log: Callable[[str], None]) -> str:
    path = Path(remote).expanduser().absolute()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _git(["init", "-q", "--bare", "-b", BRANCH, str(path)], path.parent, env, f"create a repository at {path}")
        log(f"created the bare git repository {path}")
    elif subprocess.run(["git", "-C", str(path), "rev-parse", "--git-dir"], capture_output=True, env=env,
                        preexec_fn=dies_with_parent()).returncode:
        raise PushError(f"export.push_to={remote} exists and is not a git repository; give a repository, a URL, "
                        "or a path that does not exist yet (it becomes a bare repository)")
    return str(path)


def push(folder: Path, remote: str, *, work: Path, message: str, log: Callable[[str], None],
         secret_env: dict[str, str] | None = None) -> dict[str, Any]:
    """Commit the files of ``folder`` onto ``main`` of ``remote`` and push; returns the commit."""
    if shutil.which("git") is None:
        raise PushError("export.push_to needs the git command, which is not installed")
    work = Path(work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    token = git_token(remote, secret_env)
    if token:
        from llmpipe import secrets

        secrets.remember([token])
    env = git_env(work, token)
    url = _prepare_local(remote, env, log) if is_local(remote) else remote
    repo = work / "repo"
    _git(["init", "-q", str(repo)], work, env, "create a working repository")
    _git(["remote", "add", "origin", url], repo, env, "add the remote")
    heads = _git(["ls-remote", "--heads", "origin", BRANCH], repo, env, f"reach {safe_url(url)}")
    if heads:
        _git(["fetch", "-q", "--depth", "1", "origin", BRANCH], repo, env, f"fetch {BRANCH} from {safe_url(url)}")
        _git(["symbolic-ref", "HEAD", f"refs/heads/{BRANCH}"], repo, env, "switch branches")
        _git(["reset", "-q", "FETCH_HEAD"], repo, env, "start from the remote branch")
    else:
        _git(["checkout", "-q", "--orphan", BRANCH], repo, env, "start a branch")
    for p in Path(folder).iterdir():
        target = repo / p.name
        if p.is_dir():
            shutil.copytree(p, target, dirs_exist_ok=True)
        else:
            shutil.copy2(p, target)
    _git(["add", "-A"], repo, env, "stage the export")
    changed = subprocess.run(["git", "diff", "--cached", "--quiet"], cwd=repo, env=env,
                             preexec_fn=dies_with_parent()).returncode != 0
    if changed:
        _git(["commit", "-q", "-m", message], repo, env, "commit the export")
        _git(["push", "-q", "origin", f"HEAD:refs/heads/{BRANCH}"], repo, env, f"push to {safe_url(url)}")
    commit = _git(["rev-parse", "HEAD"], repo, env, "read the commit")
    log(f"{'pushed' if changed else 'already on'} {safe_url(url)} {BRANCH} @ {commit[:10]}")
    shutil.rmtree(repo, ignore_errors=True)
    return {"remote": safe_url(url), "branch": BRANCH, "commit": commit, "new_commit": changed}
