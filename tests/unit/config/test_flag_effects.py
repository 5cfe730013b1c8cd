"""Every accepted parameter value takes effect, or pre-flight refuses it with the reason (issue 17).

For every parameter of the schema (llmpipe.config.flags.flag_table) this test sets a legal non-default value
(flag_cases.VALUES, else derived from the schema) on a tiny pipeline (model=tiny, data.dataset=demo_sft,
train.do_train=true, plus the parameter's context: flag_cases.CONTEXT) and asserts one outcome:

(a) pre-flight refuses it on a machine without a GPU, naming the key (then the schema declares it
    ``gpu_only=True``, and it is accepted where a GPU is);
(b) it takes effect: the fingerprint of a stage that reads it changes (not for volatile parameters, which
    never take part in fingerprints) **and** the probe of its destination (llmpipe.tools.paramdoc.DESTINATIONS,
    probes in flag_probes.PROBES) sees the value arrive;
(c) the schema declares ``effect="none: <reason>"`` (a short, reviewed list, shown in docs/parameters.md).

Parameters that are accepted and ignored today are listed in flag_cases.KNOWN_IGNORED with the reason; that
list only shrinks: an entry whose parameter shows an effect fails until it is removed.
Everything runs in-process: one Hydra compose, overrides applied with Hydra's own parser.
"""
from __future__ import annotations

import copy

import pytest

from llmpipe.config.environment import Environment
from llmpipe.config.flags import flag_table
from tests.unit.config import flag_cases as fc
from tests.unit.config import flag_probes as fp

PARAMS = [p.path for p in flag_table().params()]
BASE = ["data.dataset=demo_sft", "train.do_train=true"]

CPU = Environment(gpu_count=0)
# A machine with a GPU and the optional engines: where a gpu_only value (or a GPU-only context) is accepted.
GPU = Environment(gpu_count=1, available_packages=frozenset({
    "trackio", "vllm", "deepspeed", "bitsandbytes", "flash_attn", "liger_kernel", "unsloth", "galore_torch", "badam",
    "adam_mini", "hqq", "eetq", "matplotlib", "tensorboard", "wandb", "auto_gptq", "gptqmodel", "optimum",
}))


@pytest.fixture(autouse=True)
def online(monkeypatch):
    """Judged as on a machine with the network (train.push_to_hub is refused offline; nothing here connects)."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def composer(hydra_compose):
    """The base composed once by Hydra; each case applies its overrides with Hydra's own parser and applier."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.override_parser.overrides_parser import OverridesParser

    base = hydra_compose(*BASE)
    parser = OverridesParser.create()

    def apply(*args: str):
        cfg = copy.deepcopy(base)
        ConfigLoaderImpl._apply_overrides_to_config(parser.parse_overrides(list(args)), cfg)
        return cfg

    return apply


def preflight(cfg, env: Environment):
    """(validated, problems): what llmpipe.pipeline.session.check finds, under ``env``."""
    from llmpipe.config.rules.safety import env_problems, remote_code_problems
    from llmpipe.pipeline.dag import plan_problems
    from llmpipe.pipeline.preflight import validate

    problems = env_problems(cfg)
    if problems:
        return None, problems
    validated, problems = validate(cfg, env)
    problems = list(problems) + remote_code_problems(cfg)
    if problems:
        return None, problems
    problems = plan_problems(validated.cfg)
    return (None, problems) if problems else (validated, [])


class Cases:
    """Composed, validated, planned and fingerprinted configurations, memoised (a context's base is shared)."""

    def __init__(self, composer, tmp_path_factory, files):
        self.composer, self.tmp, self.files = composer, tmp_path_factory, str(files)
        self.memo: dict = {}

    def get(self, overrides: tuple[str, ...], env: Environment):
        key = (overrides, env.gpu_count)
        if key not in self.memo:
            self.memo[key] = self._make(overrides, env)
        return self.memo[key]

    def _make(self, overrides, env):
        from llmpipe.pipeline.dag import build_plan
        from llmpipe.pipeline.fingerprint import compute_fingerprints

        cfg = self.composer(*(o.replace("{files}", self.files) for o in overrides))
        validated, problems = preflight(cfg, env)
        if problems:
            return problems
        plan = build_plan(validated.cfg)
        compute_fingerprints(plan, self.tmp.getbasetemp() / "store")
        work = self.tmp.mktemp("case")
        return fp.Case(validated.cfg, validated.obj, plan, work)


@pytest.fixture(scope="module")
def cases(composer, tmp_path_factory):
    from llmpipe.config.rules.safety import ENV_TRUST_REMOTE_CODE

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV_TRUST_REMOTE_CODE, "1")   # the user's own opt-in, as on a command line
        yield Cases(composer, tmp_path_factory, fc.make_files(tmp_path_factory.mktemp("files")))


def _names(problems, key: str) -> bool:
    return any(key == p.key or key in str(p.key).split(": ") or key in str(p.message) for p in problems)


def outcome(path: str, cases: Cases) -> tuple[str, str]:
    """("refused" | "acts" | "none" | "ignored", detail) for one parameter."""
    from llmpipe.pipeline.fingerprint import read_paths
    from llmpipe.tools.paramdoc import destination

    p = flag_table().by_path(path)
    if p.meta.effect:
        return "none", p.meta.effect
    ctx = fc.context_for(path)
    setting = f"{'++' if p.type == 'dict' else ''}{path}={fc.value_for(p)}"
    env = CPU
    base = cases.get(ctx, CPU)
    if isinstance(base, list) and _names(base, ctx[0].split("=")[0] if ctx else "?") or isinstance(base, list):
        env = GPU   # the context itself needs a GPU (e.g. infer.backend=vllm): judge the parameter on one
        base = cases.get(ctx, GPU)
        assert not isinstance(base, list), f"{path}: the context {ctx} is refused: {base}"
    changed = cases.get(ctx + (setting,), env)
    if isinstance(changed, list):
        why = "; ".join(f"{q.key}: {q.message}" for q in changed)
        if _names(changed, path):
            if env is CPU and not isinstance(cases.get(ctx + (setting,), GPU), list):
                return "refused", why
            if path in fc.REFUSED:
                return "refused", why
            raise AssertionError(f"{path}: {setting} is refused even with a GPU ({why}): choose a legal value in "
                                 "flag_cases.VALUES / CONTEXT, or list it in flag_cases.REFUSED with the reason")
        raise AssertionError(f"{path}: {setting} is refused without naming {path}: "
                             + "; ".join(f"{q.key}: {q.message}" for q in changed))
    where = []
    if not p.meta.volatile:
        # A translated older flag acts through its new path; a parameter that no stage reads acts outside the
        # stored results (the launch, the server, the run): then only the probe applies.
        base_fps = {n.id: n.fingerprint for n in base.plan.nodes}
        owners = [n for n in changed.plan.nodes
                  if p.meta.deprecated or path in read_paths(n.kind.reads, n.kind.ignores)]
        moved = [n.id for n in owners if base_fps.get(n.id) != n.fingerprint]
        if owners and not moved:
            return "ignored", f"no fingerprint changes: the stages reading it ({[n.id for n in owners]}) kept theirs"
        if moved:
            where.append(f"fingerprint of {', '.join(moved)}")
    if path in fc.UNPROBED:
        return "acts", "; ".join(where) + " (no probe yet: " + fc.UNPROBED[path] + ")"
    dest = destination(path)
    if dest is None:
        return "ignored", f"no destination declared in llmpipe.tools.paramdoc.DESTINATIONS ({'; '.join(where)})"
    probe = fp.PROBES[dest]
    before, after = probe(base), probe(changed)
    if before == after:
        return "ignored", f"the {dest} probe does not see it ({'; '.join(where) or 'volatile'})"
    return "acts", f"{dest}; " + "; ".join(where)


@pytest.mark.parametrize("path", PARAMS)
def test_every_parameter_acts_or_is_refused(path, cases):
    kind, detail = outcome(path, cases)
    p = flag_table().by_path(path)
    if path in fc.KNOWN_IGNORED:
        assert kind == "ignored", (f"{path} is listed in KNOWN_IGNORED ({fc.KNOWN_IGNORED[path]}) but now {kind}: "
                                   f"{detail}. Remove it from KNOWN_IGNORED in tests/unit/config/flag_cases.py.")
        return
    assert kind != "ignored", (
        f"{path} is accepted and ignored: {detail}. Make it act (a stage reads it in llmpipe/stages/kinds.py and its "
        f"destination in llmpipe.tools.paramdoc.DESTINATIONS has a probe in tests/unit/config/flag_probes*.py), "
        f"refuse it in pre-flight where it cannot act, or declare effect='none: <reason>' on its param(...)")
    if kind == "refused" and path not in fc.REFUSED:
        assert p.meta.gpu_only, f"{path} is refused on a machine without a GPU ({detail}): declare gpu_only=True"
