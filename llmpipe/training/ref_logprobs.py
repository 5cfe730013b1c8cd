"""Reference log-probabilities computed once (the ``reference`` stage) and read by the dpo/kto train stage.

Computing (llmpipe.training.ref_compute): the train stage's own TRL trainer class (DPOTrainer, llmpipe's KtoPairTrainer, KTOTrainer) is
built around the reference model with ``precompute_ref_log_probs=True``, so the rows are prepared, batched,
truncated and scored by exactly the code that scores them inline (``compute_ref_log_probs``: no gradients,
the run's autocast, LD-DPO's ``ld_alpha``, KTO's KL completions rotated within each
``per_device_train_batch_size`` block). Only TRL's caching is replaced: TRL would write its cache file next
to the load stage's published data; here the columns are published by the reference stage itself
(``logps/<split>/``, a datasets folder per split: ``train``, ``eval`` or each ``eval_each`` name).
Under a distributed launch the dataloader is sharded across ranks and gathered, as in TRL.

The reference model is :func:`llmpipe.training.reference.load_reference`'s; for LoRA without
``pref.ref_model`` (the policy with its adapter disabled) it is the policy's base as training builds it
(``load_causal_lm(training=True)`` and the training patches), without the adapter — which is why the stage
does not depend on ``lora.*`` (the plan routes PiSSA and resumed adapters inline:
llmpipe.config.rules.reference_plan).

Reading: :func:`reading_trainer` subclasses the train stage's trainer so that TRL's precompute hook joins
the published columns to its prepared datasets instead of running the reference; the row counts must match,
and the reference model is not loaded at all.
"""
from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from collections.abc import Callable

from llmpipe.errors import UserError

COLUMNS = {"dpo": ("ref_chosen_logps", "ref_rejected_logps"), "kto": ("ref_logps", "ref_KL_logps")}
INDEX = "reference.json"


class ReferenceStageError(UserError):
    """The published reference log-probs do not fit this training run (message says why and what to do)."""


@contextlib.contextmanager
def no_model_hash():
    """TRL hashes every weight of the reference for its cache key when precomputing; llmpipe's key is the
    stage fingerprint, so the hash (a full copy of the weights to numpy) is skipped."""
    import trl.trainer.dpo_trainer as dpo
    import trl.trainer.kto_trainer as kto

    saved = dpo.hash_module, kto.hash_module
    dpo.hash_module = kto.hash_module = lambda module: "llmpipe-reference-stage"
    try:
        yield
    finally:
        dpo.hash_module, kto.hash_module = saved


def visited_rows(trainer, steps: int) -> list[int] | None:
    """The train rows (sorted indices) that ``trainer``'s first ``steps`` optimizer steps read, on all ranks
    together, or None when they read every row. The order is the trainer's own: its train dataloader (sampler,
    seed, batch size, gradient accumulation, shuffling, sharding across ranks) as ``Trainer.train`` builds it;
    only the batch sampler is walked, no row is loaded."""
    loader = trainer.get_train_dataloader()
    sampler = loader.batch_sampler
    batches = getattr(sampler, "batch_sampler", sampler)   # accelerate's per-rank shard wraps the global batches
    world = trainer.accelerator.num_processes if batches is not sampler else 1
    need = steps * trainer.args.gradient_accumulation_steps * world
    rows: set[int] = set()
    for i, batch in enumerate(batches):
        if i == need:
            return sorted(rows)
        rows.update(int(r) for r in batch)
    return None   # one epoch or more: every row


def scoring_trainer(base: type, steps: int | None = None, waiters: Callable[[], int] | None = None) -> type:
    """``base`` whose precompute hook scores a dataset and keeps the columns (no cache file, dataset unchanged).
    ``steps``: score only the train rows the first ``steps`` optimizer steps read (:func:`visited_rows`); the
    columns of the other rows are NaN, which the reading trainer refuses to train on. ``waiters``: how many
    jobs of this machine wait for the scores (:func:`borrowed_threads`)."""

    class Scoring(base):
        scored: dict[str, dict[str, list[float]]]

        def _precompute_ref_logps(self, dataset, name: str, batch_size: int):
            from datasets import IterableDataset

            if isinstance(dataset, IterableDataset):
                raise ReferenceStageError("the reference stage needs map-style data (not data.streaming); "
                                          "pref.precompute_reference=false computes the reference inline")
            if getattr(self, "_is_vision_dataset", False):   # TRL's processor-only vision path, which llmpipe's image
                # rows never take (llmpipe.training.mm_preference hands TRL text rows and adds the images itself)
                raise ReferenceStageError("rows on TRL's own vision path: the reference stage scores the rows llmpipe "
                                          "prepares; pref.precompute_reference=false computes the reference inline")
            rows = visited_rows(self, steps) if steps and name == "train" else None
            part = dataset if rows is None else dataset.select(rows)
            cols, local = self._score(part, batch_size)
            if rows is not None:   # NaN where no step reads the row
                cols = {k: _spread(v, rows, len(dataset)) for k, v in cols.items()}
            if not hasattr(self, "scored"):
                self.scored, self.local_rows, self.visited = {}, {}, {}
            self.scored[name] = cols
            self.local_rows[name] = local   # this rank's share (before the gather; may hold the last batch's pads)
            self.visited[name] = len(part)
            return dataset

        def _score(self, dataset, batch_size: int) -> tuple[dict[str, list[float]], int]:
            import torch
            from torch.utils.data import DataLoader

            loader = self.accelerator.prepare(DataLoader(
                dataset, batch_size=batch_size, collate_fn=self.data_collator, shuffle=False,
                num_workers=self.args.dataloader_num_workers, pin_memory=self.args.dataloader_pin_memory))
            first, second, local = [], [], 0
            with borrowed_threads(waiters) as borrow:
                for batch in loader:
                    borrow()
                    a, b = self.compute_ref_log_probs(self.model, batch)
                    local += len(a)
                    if b is None:
                        a = self.accelerator.gather_for_metrics(a)
                    else:
                        a, b = self.accelerator.gather_for_metrics((a, b))
                        second.append(b.float().cpu())
                    first.append(a.float().cpu())
            names = COLUMNS["kto"] if hasattr(self, "calculate_KL") else COLUMNS["dpo"]
            cols = {names[0]: torch.cat(first).tolist()}
            if second:
                cols[names[1]] = torch.cat(second).tolist()
            return cols, local

    Scoring.__name__ = Scoring.__qualname__ = f"Scoring{base.__name__}"
    return Scoring


@contextlib.contextmanager
def borrowed_threads(waiters: Callable[[], int] | None):
    """While other jobs of this machine wait for this computation (a sweep's jobs sharing the reference stage:
    loky gives each of ``n_jobs`` workers ``cores // n_jobs`` threads), it runs on their idle cores too:
    ``borrow()`` (called between batches) sets torch's threads to this job's own times one plus the number of
    waiting jobs, at most the cores this process may use; the job's own count comes back at the end. The
    log-probs do not depend on the thread count beyond float summation order."""
    import torch

    own = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or own)

    def borrow() -> None:
        want = min(cores, own * (1 + waiters())) if waiters is not None else own
        if want != torch.get_num_threads():
            torch.set_num_threads(max(own, want))

    try:
        yield borrow
    finally:
        if torch.get_num_threads() != own:
            torch.set_num_threads(own)


def _spread(values: list[float], rows: list[int], n: int) -> list[float]:
    out = [math.nan] * n
    for row, value in zip(rows, values):
        out[row] = value
    return out


def reading_trainer(base: type, ref_dir: Path) -> type:
    """``base`` whose precompute hook joins the reference stage's published columns of each split, and which
    refuses a batch holding a row the stage did not score (NaN: it scored the rows of fewer or other steps)."""

    class Reading(base):
        def compute_loss(self, model, inputs, *args, **kwargs):
            _check_scored(inputs, ref_dir)
            return super().compute_loss(model, inputs, *args, **kwargs)

        def _precompute_ref_logps(self, dataset, name: str, batch_size: int):
            from datasets import concatenate_datasets, load_from_disk

            folder = Path(ref_dir) / "logps" / name
            if not folder.is_dir():
                raise ReferenceStageError(f"the reference stage has no log-probs for the {name!r} split "
                                          f"(has {sorted(p.name for p in folder.parent.iterdir())})")
            cols = load_from_disk(str(folder))
            if set(cols.column_names) <= set(dataset.column_names):
                return dataset   # already joined (an evaluate() call on a prepared split)
            if len(cols) != len(dataset):
                raise ReferenceStageError(
                    f"the reference stage scored {len(cols)} {name} rows, this training prepared {len(dataset)}; "
                    "pref.precompute_reference=false computes the reference inline")
            return concatenate_datasets([dataset, cols], axis=1)

    Reading.__name__ = Reading.__qualname__ = base.__name__
    return Reading


def _check_scored(inputs, ref_dir: Path) -> None:
    for key in (*COLUMNS["dpo"], *COLUMNS["kto"]):
        value = inputs.get(key) if hasattr(inputs, "get") else None
        if value is not None and bool(value.isnan().any()):
            raise ReferenceStageError(
                f"this batch holds rows the reference stage ({Path(ref_dir).name[:10]}) did not score: it scored the "
                "rows that the first train.max_steps steps read with this seed, batch size and launch, and this run "
                "reads others; pref.precompute_reference=false computes the reference inline")
