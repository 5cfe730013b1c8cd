"""run.force accepts a stage name, a list, 'all' and true (every stage), never crashes on a scalar."""
from __future__ import annotations

from types import SimpleNamespace

from omegaconf import OmegaConf

from llmpipe.pipeline.runner import forced


def _node(name):
    return SimpleNamespace(id=name, kind=SimpleNamespace(name=name), cfg=OmegaConf.create({"data": {}}))


def test_force_forms():
    train, load = _node("train"), _node("load")
    assert forced(train, True) and forced(load, True)
    assert forced(train, "train") and not forced(load, "train")
    assert forced(train, ["all"]) and forced(train, ["train", "merge"]) and not forced(load, ["train"])
    assert not forced(train, None) and not forced(train, []) and not forced(train, False)
