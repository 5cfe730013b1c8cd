"""Every dotted config path written in llmpipe's source names a parameter of the schema (flag_table()) or a
family (a prefix of parameter paths), so a misspelled path fails here instead of silently reading the
default (``get(cfg, "a.b", default)`` returns the default for a path that does not exist).

Scanned with ``ast``, in every module of the package:

- the path argument of ``get``/``cfg_get``/``_get``/``_set``/``_is_set`` and ``OmegaConf.select``/``update``/
  ``is_missing`` (second argument), and of ``problem(rule, key, ...)``/``Problem(key, ...)`` (``a + b`` keys);
- ``keys=`` (``@rule``), ``reads=``/``ignores=`` (StageKind, TrainStage) and ``families=`` arguments, with
  module constants, ``list(...)`` and ``+`` followed;
- tables: a tuple, list or set literal (or dict keys) holding a known path must hold only known paths among
  its dotted strings (CUSTOM_OPTIMIZERS, NAMES, REF_KEYS, ``for key in (...)``);
- anywhere: a dotted string that starts with a family name must be a known path (file names excepted).

Hydra's own node (``hydra.*``) and the ``recipe`` group are not parameters of llmpipe's schema and are skipped.
"""
from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest

import llmpipe
from llmpipe.config.flags import flag_table

PACKAGE = Path(llmpipe.__file__).parent
DOTTED = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
PATH_FUNCS = {"get", "cfg_get", "_get", "_set", "_is_set"}             # f(cfg, "a.b", ...)
OMEGACONF_FUNCS = {"select", "update", "is_missing"}                  # OmegaConf.f(cfg, "a.b", ...)
PATH_KEYWORDS = {"keys", "reads", "ignores", "families"}
FILE_SUFFIXES = {"json", "jsonl", "yaml", "yml", "txt", "md", "csv", "parquet", "arrow", "bin", "safetensors",
                 "py", "pt", "pth", "lock", "log", "model", "tmp", "gguf"}


@functools.lru_cache(maxsize=1)
def known() -> frozenset[str]:
    """Every parameter path and every proper prefix of one (the families)."""
    paths = {p.path for p in flag_table().params()}
    return frozenset(paths | {p.rsplit(".", i)[0] for p in paths for i in range(1, p.count(".") + 1)})


def _families() -> set[str]:
    return {p.split(".", 1)[0] for p in known()}


def _ok(path: str) -> bool:
    # hydra.*: Hydra's own node; recipe: the config group a pre-flight problem names (+recipe=<name>)
    return path in known() or path in ("hydra", "recipe") or path.startswith("hydra.")


def _constants(tree: ast.Module) -> dict[str, ast.AST]:
    out: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    out[target.id] = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            out[node.target.id] = node.value
    return out


def _strings(node: ast.AST | None, consts: dict[str, ast.AST], seen: frozenset[str] = frozenset()) -> list[str]:
    """The string constants an expression is built from (literals, module constants, list(...), a + b)."""
    if node is None:
        return []
    if isinstance(node, ast.Constant):
        return [node.value] if isinstance(node.value, str) else []
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [s for e in node.elts for s in _strings(e, consts, seen)]
    if isinstance(node, ast.Dict):
        return [s for k in node.keys for s in _strings(k, consts, seen)]
    if isinstance(node, ast.Starred):
        return _strings(node.value, consts, seen)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _strings(node.left, consts, seen) + _strings(node.right, consts, seen)
    if isinstance(node, ast.Name) and node.id in consts and node.id not in seen:
        return _strings(consts[node.id], consts, seen | {node.id})
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) == 1 \
            and node.func.id in ("list", "tuple", "set", "frozenset", "sorted"):
        return _strings(node.args[0], consts, seen)
    return []


def _key_paths(key: str) -> list[str]:
    """A Problem key: one path, or several joined by ' + '."""
    return [k.strip() for k in key.split(" + ")]


def unknown_paths(source: str, where: str = "<source>") -> list[str]:
    """``where:line: path`` for every config path in ``source`` that the schema does not have."""
    tree = ast.parse(source)
    consts = _constants(tree)
    families = _families()
    bad: list[str] = []

    def check(path: str, node: ast.AST) -> None:
        if not _ok(path):
            bad.append(f"{where}:{getattr(node, 'lineno', '?')}: {path}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else None
            omegaconf = isinstance(func, ast.Attribute) and func.attr in OMEGACONF_FUNCS \
                and isinstance(func.value, ast.Name) and func.value.id == "OmegaConf"
            if (name in PATH_FUNCS or omegaconf) and len(node.args) >= 2:
                arg = node.args[1]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    check(arg.value, arg)
            if name == "problem" and len(node.args) >= 2:
                arg = node.args[1]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    for path in _key_paths(arg.value):
                        check(path, arg)
            if name == "Problem":
                arg = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "key"), None)
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    for path in _key_paths(arg.value):
                        check(path, arg)
            for kw in node.keywords:
                if kw.arg in PATH_KEYWORDS:
                    for path in _strings(kw.value, consts):
                        check(path, kw.value)
        if isinstance(node, (ast.Tuple, ast.List, ast.Set, ast.Dict)):
            items = node.keys if isinstance(node, ast.Dict) else node.elts
            dotted = [(e.value, e) for e in items if isinstance(e, ast.Constant) and isinstance(e.value, str)
                      and DOTTED.match(e.value)]
            if any(p in known() for p, _ in dotted):   # a table of config paths: all of them must be
                for path, e in dotted:
                    check(path, e)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and DOTTED.match(node.value):
            head, tail = node.value.split(".", 1)[0], node.value.rsplit(".", 1)[-1]
            if head in families and tail not in FILE_SUFFIXES:
                check(node.value, node)
    return sorted(set(bad))


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_config_path_in_the_package_is_in_the_schema():
    bad = [b for f in _modules() for b in unknown_paths(f.read_text(encoding="utf-8"), str(f.relative_to(PACKAGE)))]
    assert not bad, "config paths that are not parameters or families of the schema:\n" + "\n".join(bad)


def test_the_scan_sees_the_tables_and_declarations():
    """The scan reaches the places paths are written (so a pass above means something)."""
    rules = (PACKAGE / "config" / "rules" / "preference.py").read_text()
    assert unknown_paths(rules.replace('"pref.ref_model_adapters"', '"pref.ref_model_adapter"'))
    kinds = (PACKAGE / "stages" / "kinds.py").read_text()
    assert unknown_paths(kinds.replace('"train.data_seed"', '"train.dataseed"'))
    stages = (PACKAGE / "config" / "train_stages.py").read_text()
    assert unknown_paths(stages.replace('reads=("generate",)', 'reads=("generation",)'))


@pytest.mark.parametrize("source,path", [
    ('x = get(cfg, "data.datset")', "data.datset"),
    ('x = get(cfg, "lomo.use_lomo", False)', "lomo.use_lomo"),
    ('x = OmegaConf.select(cfg, "model.name_or_pth", default=None)', "model.name_or_pth"),
    ('CUSTOM = ("galore.use_galore", "lomo.use_lomo", "badam.use_badam")', "lomo.use_lomo"),
    ('NAMES = {"galore.use_galore": "GaLore", "lomo.use_lomo": "APOLLO"}', "lomo.use_lomo"),
    ('def f(cfg):\n    for key in ("lora.rank", "lora.rnak"):\n        pass', "lora.rnak"),
    ('@rule("r", keys=["pref.beta", "pref.betta"], bad=[], good=[])\ndef r(cfg, env):\n    pass', "pref.betta"),
    ('KEYS = ("pref.loss", "pref.lost")\n@rule("r", keys=list(KEYS), bad=[], good=[])\ndef r(cfg, env):\n    pass',
     "pref.lost"),
    ('K = StageKind(name="x", reads=("lora", "trian.seed") + _LOAD)\n_LOAD = ("model",)', "trian.seed"),
    ('K = StageKind(name="x", reads=("lora",) + _LOAD)\n_LOAD = ("modle",)', "modle"),
    ('S = TrainStage("ppo", "doc", data_kind="prompt", dataset_format="plain", families=("pref", "ppoo"))', "ppoo"),
    ('yield problem("r", "data.val_size + data.eval_datasets", 1, "msg")', "data.eval_datasets"),
    ('p = Problem("infer.backnd", "x", "msg")', "infer.backnd"),
    ('x = "train.learning_rte"', "train.learning_rte"),
])
def test_a_wrong_path_fails(source, path):
    found = unknown_paths(source)
    assert found and {f.rsplit(": ", 1)[1] for f in found} == {path}, found


def test_right_paths_and_other_dotted_strings_pass():
    source = '\n'.join([
        'x = get(cfg, "data.dataset", [])',
        'y = OmegaConf.select(cfg, "hydra.runtime.output_dir")',
        'CUSTOM = ("galore.use_galore", "badam.use_badam")',
        'K = StageKind(name="x", reads=("model", "train.seed"), ignores=("train.do_eval",))',
        'f = "model.safetensors"',                  # a file name, not a path
        'm = ("torch.nn", "llmpipe.config")',       # module names: no config path among them
        'yield problem("r", "data.val_size + data.eval_dataset", 1, "msg")',
    ])
    assert unknown_paths(source) == []
