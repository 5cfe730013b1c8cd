"""The train stage refuses a batch holding a row the reference stage did not score (NaN), never trains on it."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")


def test_a_batch_with_an_unscored_row_is_refused():
    from llmpipe.training.ref_logprobs import (
        ReferenceStageError,
        _check_scored,
        _spread,
    )

    assert _spread([1.0, 2.0], [3, 0], 5)[0] == 2.0 and math.isnan(_spread([1.0, 2.0], [3, 0], 5)[1])
    scored = {"ref_chosen_logps": torch.tensor([-3.0, -4.0]), "ref_rejected_logps": torch.tensor([-5.0, -6.0])}
    _check_scored(scored, Path("/store/reference/abc"))   # every row scored: nothing to say
    _check_scored({"ref_logps": torch.tensor([-1.0]), "ref_KL_logps": torch.tensor([-2.0])}, Path("x"))
    for key in ("ref_rejected_logps", "ref_KL_logps"):
        with pytest.raises(ReferenceStageError, match="did not score.*pref.precompute_reference=false"):
            _check_scored({**scored, key: torch.tensor([-5.0, float("nan")])}, Path("/store/reference/abc"))
