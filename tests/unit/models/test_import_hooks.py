"""llmpipe.models.import_hooks: a patch runs right after its module first executes, or at once if it already has;
a find_spec question without an import leaves the hook in place."""
from __future__ import annotations

import importlib.util
import sys

from llmpipe.models.import_hooks import AfterImport, after_import


def test_the_patch_runs_after_the_first_import_and_the_hook_goes(monkeypatch, tmp_path):
    (tmp_path / "llmpipe_hooked_mod.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "llmpipe_hooked_mod", raising=False)
    seen = []
    after_import("llmpipe_hooked_mod", lambda: seen.append(sys.modules["llmpipe_hooked_mod"].VALUE))
    after_import("llmpipe_hooked_mod", lambda: seen.append("twice"))   # idempotent per name
    assert importlib.util.find_spec("llmpipe_hooked_mod") is not None and seen == []   # a question only
    import llmpipe_hooked_mod  # noqa: F401
    assert seen == [1]
    assert not any(isinstance(f, AfterImport) and f.name == "llmpipe_hooked_mod" for f in sys.meta_path)
    after_import("llmpipe_hooked_mod", lambda: seen.append("now"))   # already imported: at once
    assert seen == [1, "now"]
