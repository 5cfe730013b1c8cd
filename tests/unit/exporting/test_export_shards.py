"""Export weights: sharding at a byte size (safetensors and legacy .bin), index files, round trips, the
atomic export folder (a failure mid-write, a full disk, leaves nothing that looks complete)."""
from __future__ import annotations

import errno
import json

import pytest

from llmpipe.exporting import folder as xfolder
from llmpipe.exporting.errors import ExportError
from llmpipe.exporting.shards import iter_tensors, shard_bytes, weight_files, write_shards

torch = pytest.importorskip("torch")


def _tensors():
    g = torch.Generator().manual_seed(0)
    # 4 x 4000 bytes, 1 x 40000 bytes (larger than the shard size below), 1 int tensor
    out = [(f"layer.{i}.weight", torch.randn(1000, generator=g)) for i in range(4)]
    out.append(("big.weight", torch.randn(10000, generator=g)))
    out.append(("ids", torch.arange(10, dtype=torch.int64)))
    return out


@pytest.mark.parametrize("size,expected", [(5, 5 * 10**9), (0.5, 5 * 10**8), ("500MB", 5 * 10**8),
                                           ("64KiB", 65536), ("2", 2 * 10**9), ("1.5GB", 15 * 10**8)])
def test_shard_bytes(size, expected):
    assert shard_bytes(size) == expected


@pytest.mark.parametrize("bad", ["lots", "-1GB", 0, "5 parsecs"])
def test_shard_bytes_rejects(bad):
    with pytest.raises(ExportError, match="export.size"):
        shard_bytes(bad)


@pytest.mark.parametrize("legacy", [False, True])
def test_write_shards_splits_at_the_byte_size_and_round_trips(tmp_path, legacy):
    info = write_shards(iter(_tensors()), tmp_path, max_bytes=8100, legacy=legacy)
    ext, index = ("bin", "pytorch_model.bin.index.json") if legacy else ("safetensors", "model.safetensors.index.json")
    # 2 small tensors per shard (8000 bytes) twice, the big one alone, then ids
    assert info["shards"] == 4 and info["index"] == index
    files = sorted(p.name for p in tmp_path.iterdir())
    stem = "pytorch_model" if legacy else "model"
    assert files == sorted([f"{stem}-0000{i}-of-00004.{ext}" for i in range(1, 5)] + [index])
    data = json.loads((tmp_path / index).read_text())
    assert set(data["weight_map"]) == {n for n, _ in _tensors()}
    assert data["metadata"]["total_size"] == info["total_bytes"] == 4 * 4000 + 40000 + 80
    assert data["weight_map"]["big.weight"] == f"{stem}-00003-of-00004.{ext}"
    back = dict(iter_tensors(weight_files(tmp_path)))
    for name, t in _tensors():
        assert torch.equal(back[name], t)


def test_single_shard_has_no_index_and_cast_only_touches_floats(tmp_path):
    info = write_shards(iter(_tensors()), tmp_path, max_bytes=10**9, cast=torch.bfloat16)
    assert info["shards"] == 1 and info["index"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
    back = dict(iter_tensors(weight_files(tmp_path)))
    assert back["big.weight"].dtype == torch.bfloat16 and back["ids"].dtype == torch.int64


def test_duplicate_names_and_missing_weights_are_errors(tmp_path):
    with pytest.raises(ExportError, match="twice"):
        write_shards(iter([("a", torch.zeros(2)), ("a", torch.zeros(2))]), tmp_path, 100)
    with pytest.raises(ExportError, match="no model weights"):
        weight_files(tmp_path / "nothing")


# ------------------------------------------------------------------------------------- export folder
def _export(dest, fail_on_write: int | None = None, monkeypatch=None):
    """Write a small export into ``dest`` like the export stage does (staging, shards, marker, swap)."""
    if fail_on_write is not None:
        import safetensors.torch as st

        real, calls = st.save_file, []

        def flaky(*a, **kw):
            calls.append(1)
            if len(calls) == fail_on_write:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(*a, **kw)

        monkeypatch.setattr(st, "save_file", flaky)
    with xfolder.staging(dest) as tmp:
        write_shards(iter(_tensors()), tmp, max_bytes=8100)
        (tmp / "config.json").write_text("{}")
        return xfolder.publish(tmp, dest, "fp-1")


def test_full_disk_mid_write_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    dest = tmp_path / "export"
    with pytest.raises(ExportError, match="no space left"):
        _export(dest, fail_on_write=3, monkeypatch=monkeypatch)
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == []          # the staging folder is gone too


def test_failed_re_export_keeps_the_previous_export(tmp_path, monkeypatch):
    dest = tmp_path / "export"
    info = _export(dest)
    before = {p.name: p.read_bytes() for p in dest.iterdir()}
    assert xfolder.is_current(dest, "fp-1") and not xfolder.is_current(dest, "fp-2")
    with pytest.raises(ExportError):
        _export(dest, fail_on_write=2, monkeypatch=monkeypatch)
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == before
    assert set(info["files"]) == set(before) - {xfolder.MARKER}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_a_damaged_export_is_not_current(tmp_path):
    dest = tmp_path / "export"
    _export(dest)
    (dest / "config.json").write_text('{"changed": true}')
    assert not xfolder.is_current(dest, "fp-1")


def test_foreign_folder_and_stale_staging(tmp_path):
    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / "notes.txt").write_text("my own files")
    with pytest.raises(ExportError, match="did not write"):
        xfolder.check_destination(dest)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="is a file"):
        xfolder.check_destination(tmp_path / "file")
    stale = tmp_path / f".new{xfolder._TMP}999999999"     # a killed run's staging folder (no such pid)
    stale.mkdir()
    _export(tmp_path / "new")
    assert not stale.exists() and xfolder.is_current(tmp_path / "new", "fp-1")


def test_exported_files_are_readable_like_any_new_file(tmp_path):
    """safetensors writes 0600 files; an export is for others to read (a server, a team), so every file
    gets the mode a new file gets under the umask, like the config and tokenizer files next to it."""
    import os

    dest = tmp_path / "export"
    _export(dest)
    umask = os.umask(0)
    os.umask(umask)
    modes = {p.name: p.stat().st_mode & 0o777 for p in dest.iterdir()}
    assert any(n.endswith(".safetensors") for n in modes)
    assert set(modes.values()) == {0o666 & ~umask}, modes
