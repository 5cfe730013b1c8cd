"""The Hydra entry point: ``python -m llmpipe`` and the ``llmpipe`` console script (the same app)."""
from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from llmpipe.resources import conf_path


@hydra.main(version_base="1.3", config_path=conf_path(), config_name="config")
def main(cfg: DictConfig) -> float | None:
    from llmpipe.app import run_task

    return run_task(cfg)


def cli() -> None:
    from llmpipe import secrets

    # First of all: whatever Hydra prints or logs from here on (--cfg, --info, job lines, errors, the job's log
    # file) has the command line's and the environment's secrets replaced.
    secrets.install(sys.argv[1:])
    from llmpipe.config.diagnose import explain_composition_failure
    from llmpipe.config.resolvers import register_resolvers
    from llmpipe.config.root import register_schema
    from llmpipe.hydra_callbacks import STATE

    from llmpipe.problems import exit_with
    from llmpipe.safety import hydra_settings_in_recipes

    from hydra_plugins.llmpipe_searchpath import register
    from llmpipe import hydra_speedups

    register_resolvers()
    register_schema()
    register()   # the recipe search path (plugin discovery cannot see a default editable install)
    hydra_speedups.install(sys.argv[1:])
    untrusted = hydra_settings_in_recipes(sys.argv[1:])
    if untrusted:
        exit_with(untrusted)
    held = _HeldStream(sys.stderr, lambda: STATE["callback_ready"])
    sys.stderr = held
    try:
        main()
    except SystemExit as e:
        # Hydra exits 1 on any error. If it failed before our pre-flight callback existed, the config
        # itself could not be composed (unknown key, wrong type, missing recipe...): a config error. What
        # Hydra printed about it (a traceback, "Set the environment variable HYDRA_FULL_ERROR=1") is dropped.
        if e.code == 1 and not STATE["callback_ready"]:
            reason = hydra_reason(held.drop())
            if reason:
                print(reason, file=sys.stderr)
            explain_composition_failure(sys.argv[1:])
            raise SystemExit(2) from None
        raise
    finally:
        held.release()


def hydra_reason(text: str) -> str:
    """What Hydra said about a failed composition, without its traceback and its HYDRA_FULL_ERROR hint: the
    exception's own lines (a refused ``${oc.env:...}`` is explained by llmpipe itself, so it is left out)."""
    from llmpipe.config.resolvers import REFUSED
    from llmpipe.secrets import redact_text

    if REFUSED:
        return ""
    lines = text.splitlines()
    if any(ln.startswith("Traceback (most recent call last)") for ln in lines):
        # the exception starts at the first unindented line after the last frame (its source line and ^^^
        # markers are indented); the exception's own indented details (OmegaConf's full_key: ...) are kept
        frames = [i for i, ln in enumerate(lines) if ln.startswith(("  File ", "Traceback"))]
        rest = lines[max(frames) + 1:]
        lines = rest[next((i for i, ln in enumerate(rest) if ln and not ln[0].isspace()), len(rest)):]
    kept = [ln for ln in lines if "HYDRA_FULL_ERROR" not in ln]
    return redact_text("\n".join(kept).strip())


class _HeldStream:
    """stderr while Hydra composes: held back until the pre-flight callback exists (or the command ends well),
    so a composition failure shows llmpipe's explanation instead of Hydra's traceback. Passes through after.
    HYDRA_FULL_ERROR=1 holds nothing."""

    def __init__(self, stream, ready):
        import os

        self._stream, self._ready, self._held = stream, ready, []
        self._hold = os.environ.get("HYDRA_FULL_ERROR") != "1"

    def write(self, text: str) -> int:
        if self._hold and not self._ready():
            self._held.append(text)
            return len(text)
        self.release()
        return self._stream.write(text)

    def release(self) -> None:
        held, self._held, self._hold = self._held, [], False
        if held:
            self._stream.write("".join(held))
            self._stream.flush()

    def drop(self) -> str:
        """Stop holding; return what was held (not written)."""
        held, self._held, self._hold = self._held, [], False
        return "".join(held)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name):
        return getattr(self._stream, name)


INFO_FLAGS = ("--help", "-h", "--hydra-help")


def run_cli() -> None:
    """The command's process (``python -m llmpipe``, the ``llmpipe`` script): :func:`cli`, and where it ends having
    run nothing (a refused config, exit 2; ``--help``), the process ends without tearing the interpreter down, once
    stdout, stderr and the logging handlers are flushed: finalising Hydra's and llmpipe's ~500 modules took ~40 ms
    of a 0.5 s rejection. "Ran nothing" is told by torch never having been imported (every stage imports it before
    it starts); anything else exits as Python does."""
    try:
        cli()
    except SystemExit as exc:
        if exc.code == 2 and "torch" not in sys.modules:
            _exit_now(2)
        raise
    if any(a in INFO_FLAGS for a in sys.argv[1:]) and "torch" not in sys.modules:
        _exit_now(0)


def _exit_now(code: int) -> None:
    import logging
    import os

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    run_cli()
