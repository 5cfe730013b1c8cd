"""The seed-flag contract (tests/fixtures/seed_flags.tsv) and the typed schema behind it.

Every seed flag resolves to exactly its path; every parameter round-trips through Hydra composition with a
non-default value of its type; older flags and spellings translate with a note; wrong types fail
composition; out-of-range and unknown enum values are reported as problems naming the key.
"""
from __future__ import annotations

import copy
import functools
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from llmpipe.config.checks import check_value
from llmpipe.config.flags import Param, flag_table
from llmpipe.pipeline.preflight import validate

ROOT = Path(__file__).resolve().parents[3]


def _rows() -> list[tuple[str, str, bool]]:
    rows = []
    for line in (ROOT / "tests/fixtures/seed_flags.tsv").read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        rows.append((parts[0], parts[1], len(parts) > 2 and parts[2] == "negated"))
    return rows


ROWS = _rows()
TABLE = flag_table()
SEEDED = [p for p in TABLE.params() if p.meta.seed]  # the TSV paths plus the extra LLaMA-Factory names


def test_contract_has_every_seed_flag_once():
    assert len(ROWS) == 201
    assert len({r[0] for r in ROWS}) == len(ROWS)


@pytest.mark.parametrize("flag,path,negated", ROWS, ids=[r[0] for r in ROWS])
def test_flag_resolves(flag, path, negated, base_cfg):
    ref = TABLE.lookup(flag)
    assert ref is not None, f"seed flag {flag} does not resolve"
    assert ref.param.path == path
    assert ref.negated is negated
    if negated:
        assert ref.param.type.startswith("bool")
    else:
        assert sum(s == flag for p in TABLE.params() for s in p.meta.seed) == 1
    assert sum(p.path == path for p in TABLE.params()) == 1
    assert path.split(".", 1)[1] in base_cfg[path.split(".", 1)[0]]
    # dashes and leading -- work too (`--model-name-or-path`)
    assert TABLE.lookup("--" + flag.replace("_", "-")).param.path == path


# ---------------------------------------------------------------- round trip through composition


def _passes(p: Param, value) -> bool:
    return value != p.default and not check_value(p.path, p.meta, value)


def sample_value(p: Param):
    """A valid, non-default value of the parameter's type."""
    if p.meta.choices is not None:
        return next(c for c in p.meta.choices if c != p.default and c != "ktransformers")
    base = p.type.removesuffix(" | None")
    if base == "bool":
        return True if p.default is None else not p.default
    if base == "int":
        d = p.default if isinstance(p.default, int) else 4
        return next(v for v in (d + 1, 4, 2, 1, 0) if _passes(p, v))
    if base == "float":
        d = p.default if isinstance(p.default, float) else 0.5
        return next(v for v in (0.5, 0.25, 0.125, d * 2 + 0.5, d + 1.5) if _passes(p, v))
    if base == "str":
        return "llmpipe_test value"
    if base == "dict":
        return {"k": 1}
    raise AssertionError(f"no sample for {p.path}: {p.type}")


def override(path: str, value) -> str:
    if isinstance(value, bool):
        return f"{path}={str(value).lower()}"
    if isinstance(value, str):
        return f"{path}='{value}'"
    if isinstance(value, dict):  # typed dicts are closed (struct) on the command line: ++ opens them
        return f"++{path}={{" + ",".join(f"{k}:{v}" for k, v in value.items()) + "}"
    return f"{path}={value!r}"


def _typed_ok(p: Param, value) -> bool:
    base = p.type.removesuffix(" | None")
    want = {"bool": bool, "int": int, "float": float, "str": str, "dict": dict}[base]
    return isinstance(value, want) and (want is bool or not isinstance(value, bool))


def _read(obj, path: str):
    return functools.reduce(getattr, path.split("."), obj)


@pytest.fixture(scope="module")
def base_cfg(hydra_compose):
    return hydra_compose()


@pytest.fixture(scope="module")
def composed_all(hydra_compose):
    """Every seeded parameter set to its sample value in ONE composition (fast); None when that fails, so
    each test then composes its own override and names the culprit."""
    try:
        cfg = hydra_compose(*(override(p.path, sample_value(p)) for p in SEEDED))
        return OmegaConf.to_object(cfg)
    except Exception:  # noqa: BLE001 - fall back to per-parameter composition below
        return None


def _roundtrip(p: Param, hydra_compose, composed_all):
    want = sample_value(p)
    obj = composed_all
    if obj is None:
        obj = OmegaConf.to_object(hydra_compose(override(p.path, want)))
    got = _read(obj, p.path)
    assert got == want, f"{p.path}: set {want!r}, read back {got!r}"
    assert _typed_ok(p, got), f"{p.path}: {got!r} is not a {p.type}"


@pytest.mark.parametrize("flag,path", [(f, p) for f, p, neg in ROWS if not neg], ids=[r[0] for r in ROWS if not r[2]])
def test_flag_roundtrip(flag, path, hydra_compose, composed_all):
    _roundtrip(TABLE.by_path(path), hydra_compose, composed_all)


EXTRA = [p for p in SEEDED if all(p.path != r[1] for r in ROWS)]


@pytest.mark.parametrize("path", [p.path for p in EXTRA])
def test_extra_param_roundtrip(path, hydra_compose, composed_all):
    _roundtrip(TABLE.by_path(path), hydra_compose, composed_all)


def test_batch_composition_works(composed_all):
    assert composed_all is not None, "composing every sample override at once failed; see the per-flag tests"


# ---------------------------------------------------------------- older flags and spellings


def _validated(hydra_compose, *overrides, model: str = "tiny"):
    v, problems = validate(hydra_compose(*overrides, model=model))
    assert not problems, "\n".join(p.render() for p in problems)
    return v


@pytest.mark.parametrize("overrides,expect,note", [
    (["quantization.method=bitsandbytes"], {"quantization.method": "bnb"}, "bitsandbytes"),
    (["vision.image_resolution=256"], {"vision.image_max_pixels": 65536, "vision.image_resolution": None},
     "image_resolution"),
    (["infer.use_cache=false"], {"infer.use_kv_cache": False, "infer.use_cache": None}, "use_cache"),
    (["train.warmup_ratio=0.1"], {"train.warmup_steps": 0.1, "train.warmup_ratio": None}, "warmup_ratio"),
    (["model.new_special_tokens='<a>,<b>'"], {"model.add_special_tokens": "<a>,<b>"}, "new_special_tokens"),
    (["vision.train_mm_proj_only=true"], {"vision.freeze_vision_tower": True,
     "vision.freeze_multi_modal_projector": False, "vision.freeze_language_model": True}, "train_mm_proj_only"),
    (["train.save_safetensors=true"], {"train.save_safetensors": True}, "save_safetensors"),
    (["train.logging_dir=tb"], {"train.logging_dir": "tb"}, "logging_dir"),
    (["infer.use_cache=false", "infer.use_kv_cache=false"], {"infer.use_kv_cache": False}, "use_cache"),
    (["vision.video_resolution=100"], {"vision.video_max_pixels": 10000, "vision.video_resolution": None},
     "video_resolution"),
], ids=["bitsandbytes", "image_resolution", "use_cache", "warmup_ratio",
        "new_special_tokens", "train_mm_proj_only", "save_safetensors", "logging_dir", "use_cache_agrees",
        "video_resolution"])
def test_older_flag_translates_with_note(hydra_compose, overrides, expect, note):
    from llmpipe.config.typed import list_flags, split_list

    vision = any(o.startswith("vision.") for o in overrides)   # vision.* acts on a vision-language model only
    v = _validated(hydra_compose, *overrides, model="tiny_vl" if vision else "tiny")
    for path, want in expect.items():
        assert _read(v.obj, path) == (split_list(want) if path in list_flags() else want), path   # typed: a list
        assert OmegaConf.select(v.cfg, path) == want, path
    assert any(note in n for n in v.notes), v.notes


@pytest.mark.parametrize("overrides,key", [
    (["train.warmup_ratio=0.1", "train.warmup_steps=5"], "train.warmup_ratio + train.warmup_steps"),
    (["infer.use_cache=true", "infer.use_kv_cache=false"], "infer.use_cache + infer.use_kv_cache"),
    (["vision.image_resolution=256", "vision.image_max_pixels=1000"],
     "vision.image_resolution + vision.image_max_pixels"),
    (["model.new_special_tokens=a", "model.add_special_tokens=b"],
     "model.new_special_tokens + model.add_special_tokens"),
    (["infer.backend=ktransformers"], "infer.backend"),
    (["train.save_safetensors=false"], "train.save_safetensors"),   # transformers 5 cannot write .bin
    (["vision.video_resolution=100"], "vision.video_max_pixels"),   # translated, then refused on a text-only model
], ids=["warmup", "use_cache", "image_resolution", "special_tokens", "ktransformers", "save_safetensors_false",
        "video_resolution"])
def test_conflicting_or_removed_is_a_problem(hydra_compose, overrides, key):
    v, problems = validate(hydra_compose(*overrides))
    assert v is None
    assert key in [p.key for p in problems], [p.key for p in problems]


def test_negated_flags_share_the_bool_path():
    for flag, path, negated in ROWS:
        if negated:
            assert TABLE.lookup(flag[3:]).param.path == path


# ---------------------------------------------------------------- wrong types, ranges, enums


@pytest.mark.parametrize("ov", ["lora.rank=abc", "train.learning_rate=fast", "data.streaming=maybe",
                                "data.max_samples=many", "model.name_or_path=[1,2]"])
def test_wrong_type_fails_composition(hydra_compose, ov):
    with pytest.raises(ConfigCompositionException) as e:
        hydra_compose(ov)
    assert ov.split("=")[0] in str(e.value) + str(e.value.__cause__)


def _out_of_range(p: Param):
    m = p.meta
    integer = p.type.startswith("int")
    if m.ge is not None:
        return int(m.ge) - 1 if integer else m.ge - 0.5
    if m.gt is not None:
        return int(m.gt) if integer else m.gt
    if m.le is not None:
        return int(m.le) + 1 if integer else m.le + 0.5
    return int(m.lt) if integer else m.lt


RANGED = [p for p in TABLE.params() if any(b is not None for b in (p.meta.ge, p.meta.gt, p.meta.le, p.meta.lt))]
ENUMS = [p for p in TABLE.params() if p.meta.choices is not None]


def _problem_keys(base_cfg, path, value):
    cfg = copy.deepcopy(base_cfg)
    OmegaConf.update(cfg, path, value, merge=False)
    v, problems = validate(cfg)
    assert v is None
    return {p.key: p for p in problems}


@pytest.mark.parametrize("path", [p.path for p in RANGED])
def test_out_of_range_is_a_problem(path, base_cfg):
    p = TABLE.by_path(path)
    bad = _out_of_range(p)
    problems = _problem_keys(base_cfg, path, bad)
    assert path in problems and problems[path].rule == "range", problems


@pytest.mark.parametrize("path", [p.path for p in ENUMS])
def test_unknown_enum_value_is_a_problem(path, base_cfg):
    p = TABLE.by_path(path)
    bad = 7 if p.type.startswith("int") else "not_a_choice"
    problems = _problem_keys(base_cfg, path, bad)
    assert path in problems and problems[path].rule == "enum", problems
    assert problems[path].allowed


def test_range_and_enum_through_the_command_line(hydra_compose):
    v, problems = validate(hydra_compose("lora.rank=0", "pref.loss=simpoo", "infer.vllm_gpu_util=1.5"))
    assert v is None
    assert {"lora.rank", "pref.loss", "infer.vllm_gpu_util"} <= {p.key for p in problems}
