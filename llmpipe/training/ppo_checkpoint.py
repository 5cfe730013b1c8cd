"""PPO checkpoints in the train stage's work folder (``<work>/checkpoints/ppo-<step>.pt``): the trainable
weights of the policy, the value head, optimizer and scheduler state, the KL coefficient, the score statistics
and the log so far — written every ``train.save_steps`` PPO steps (``train.save_strategy=steps``), at most
``train.save_total_limit`` kept, and read back when the same stage runs again after a crash."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def _done(folder: Path) -> list[Path]:
    return sorted(folder.glob("ppo-*.pt"), key=lambda f: int(f.stem.split("-")[1]))


def _step_of(path: Path) -> int | None:
    number = path.name.split("-", 1)[1].split(".")[0]   # ppo-<step>.pt or ppo-<step>.pt.tmp
    return int(number) if number.isdigit() else None


def checkpoint_due(cfg: Any, step: int, total: int) -> bool:
    t = cfg.train
    return t.save_strategy == "steps" and bool(t.save_steps) and step % int(t.save_steps) == 0 and step < total


def save_checkpoint(loop) -> None:
    import torch

    folder = loop.ctx.work / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    state = {"step": loop.step, "value_head": loop.value_head.state_dict(),
             "policy": {n: q.detach().cpu() for n, q in loop.policy.named_parameters() if q.requires_grad},
             "optimizer": loop.optimizer.state_dict(), "scheduler": loop.scheduler.state_dict(),
             "kl_coef": loop.kl.value, "moments": dict(vars(loop.moments)), "history": loop.history}
    tmp = folder / f"ppo-{loop.step}.pt.tmp"
    torch.save(state, tmp)
    tmp.rename(folder / f"ppo-{loop.step}.pt")
    limit = loop.cfg.train.save_total_limit
    for old in _done(folder)[:-limit] if limit else []:
        old.unlink()
    loop.ctx.log(f"checkpoint at step {loop.step}")


def resume(loop) -> None:
    """Continue from the newest checkpoint, if there is one."""
    import torch

    folder = loop.ctx.work / "checkpoints"
    done = _done(folder)
    newest = _step_of(done[-1]) if done else -1
    cut = sorted(p.name for p in folder.glob("ppo-*.pt.tmp") if (_step_of(p) or -1) > newest)
    if cut:
        loop.ctx.log(f"{', '.join(cut)} {'is' if len(cut) == 1 else 'are'} incomplete (a save was cut short): "
                     + (f"resuming from {done[-1].name} instead" if done else "starting over"))
    if not done:
        return
    state = torch.load(done[-1], map_location="cpu", weights_only=False)
    params = dict(loop.policy.named_parameters())
    with torch.no_grad():
        for name, value in state["policy"].items():
            params[name].copy_(value)
    loop.value_head.load_state_dict(state["value_head"])
    loop.optimizer.load_state_dict(state["optimizer"])
    loop.scheduler.load_state_dict(state["scheduler"])
    loop.kl.value, loop.step, loop.history = state["kl_coef"], state["step"], state["history"]
    for key, value in state["moments"].items():
        setattr(loop.moments, key, value)
    loop.ctx.log(f"resuming from {done[-1].name} (found in {done[-1].parent})")
