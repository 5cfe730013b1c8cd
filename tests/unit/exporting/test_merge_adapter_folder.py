"""merge honours model.adapter_folder as training does (PEFT's ``subfolder``): each adapter of
model.adapter_name_or_path is read from that sub-folder, and the merge stage's fingerprint reads the setting.
The export stage exports the merge stage's model, so it follows."""
from __future__ import annotations

import types

import pytest


def _model_cfg(sub):
    return types.SimpleNamespace(adapter_folder=sub, model_revision="main", cache_dir=None, hf_hub_token=None)


def test_adapter_is_read_from_its_sub_folder(tmp_path):
    from llmpipe.stages.merge import configured_adapter

    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "adapter_config.json").write_text("{}")
    assert configured_adapter(str(tmp_path), _model_cfg("sub")) == (tmp_path / "sub").resolve()
    (tmp_path / "adapter_config.json").write_text("{}")
    assert configured_adapter(str(tmp_path), _model_cfg(None)) == tmp_path.resolve()


def test_missing_sub_folder_is_an_export_error(tmp_path):
    from llmpipe.exporting.errors import ExportError
    from llmpipe.stages.merge import configured_adapter

    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(ExportError, match="not a PEFT adapter folder"):
        configured_adapter(str(tmp_path), _model_cfg("other"))


def test_merge_fingerprint_reads_adapter_folder():
    from llmpipe.stages.kinds import MERGE

    assert "model.adapter_folder" in MERGE.reads
