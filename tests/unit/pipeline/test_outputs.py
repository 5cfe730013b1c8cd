"""train.output_dir receives the final model of a successful run (llmpipe.pipeline.outputs.link_final): a link
named model (full model) or adapter (LoRA), relative to the job folder or absolute; an earlier link is replaced,
anything else the user has there is left alone."""
from __future__ import annotations

from pathlib import Path

from llmpipe.infer.model_ref import ModelRef
from llmpipe.pipeline.outputs import link_final


def _folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    return path


def test_full_model_is_linked_into_the_job_folder(tmp_path):
    model = _folder(tmp_path / "store" / "merge" / "fp" / "model")
    job = tmp_path / "job"
    dest = link_final(ModelRef(str(model), str(model), trained=True), "trainer_output", job)
    assert dest == job / "trainer_output" / "model" and dest.is_symlink() and dest.resolve() == model.resolve()
    assert (dest / "config.json").is_file()


def test_adapter_is_linked_and_an_earlier_link_replaced(tmp_path):
    old = _folder(tmp_path / "old")
    adapter = _folder(tmp_path / "store" / "train" / "fp" / "adapter")
    out = tmp_path / "abs_out"
    out.mkdir()
    (out / "adapter").symlink_to(old)
    dest = link_final(ModelRef("base", str(adapter), (str(adapter),), trained=True), str(out), None)
    assert dest == out / "adapter" and dest.resolve() == adapter.resolve()
    assert (old / "config.json").is_file()   # what the earlier link pointed to is untouched


def test_user_files_are_never_replaced(tmp_path):
    model = _folder(tmp_path / "model_src")
    mine = _folder(tmp_path / "out" / "model")
    said: list[str] = []
    assert link_final(ModelRef(str(model), str(model), trained=True), str(tmp_path / "out"), None, said.append) is None
    assert not mine.is_symlink() and (mine / "config.json").is_file() and "already exists" in said[0]


def test_nothing_to_link(tmp_path):
    model = _folder(tmp_path / "m")
    assert link_final(None, "out", tmp_path) is None
    assert link_final(ModelRef(str(model), str(model), trained=False), "out", tmp_path) is None   # the base model
    assert link_final(ModelRef(str(model), str(model), trained=True), "out", None) is None   # relative, no job folder
    assert not (tmp_path / "out").exists()
