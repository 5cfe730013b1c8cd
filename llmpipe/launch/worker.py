"""The entry point of one rank: ``python -m llmpipe.launch.worker [--local_rank=N] <spec.json>``.

Rebuilds the StageContext from the files the parent wrote (no Hydra), runs the stage function, and:
global rank 0 writes ``result.json`` (the stage's info) into the launch folder; a rank that raises writes
``errors/rank-<N>.json`` (type, message, traceback) there first, so the parent can show it. Only rank 0
prints progress lines (marked with LOG_MARK, which the parent forwards)."""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
import traceback
from pathlib import Path

LOG_MARK = "@llmpipe@ "


def rank_info() -> tuple[int, int, int]:
    """(global rank, local rank, world size) from the launcher's environment."""
    env = os.environ
    return int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)), int(env.get("WORLD_SIZE", 1))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m llmpipe.launch.worker", description=__doc__.splitlines()[0])
    p.add_argument("--local_rank", "--local-rank", type=int, default=None, help="set by the DeepSpeed launcher")
    p.add_argument("spec", type=Path, help="spec.json written by the parent")
    return p.parse_args(argv)


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


def error_record(e: BaseException, rank: int, local_rank: int) -> dict:
    from llmpipe.secrets import redact_text

    tb = "".join(traceback.format_exception(type(e), e, e.__traceback__)).splitlines()
    return {"rank": rank, "local_rank": local_rank, "host": socket.gethostname(), "pid": os.getpid(),
            "time": time.time(), "type": type(e).__name__, "message": redact_text(str(e)),
            "traceback": [redact_text(line) for line in tb[-40:]]}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.local_rank is not None:
        os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    rank, local_rank, world = rank_info()

    from llmpipe.launch.spec import context_from_spec, read_spec

    spec = read_spec(args.spec)
    launch_dir = Path(spec["launch_dir"])

    def log(msg: str) -> None:
        if rank == 0:
            print(f"{LOG_MARK}{msg}", flush=True)

    try:
        from llmpipe.models.quiet import quiet_libraries

        quiet_libraries()
        ctx = context_from_spec(spec, log)
        if rank == 0:
            log(f"{world} ranks ({ctx.obj.launch.kind}) started")
        from llmpipe.launch import cuda_memory

        cuda_memory.reset()
        info = cuda_memory.with_peak(ctx.kind.run(ctx) or {})
    except BaseException as e:
        _write_json(launch_dir / "errors" / f"rank-{rank}.json", error_record(e, rank, local_rank))
        raise
    if rank == 0:
        _write_json(launch_dir / "result.json", {"info": info, "world_size": world, "host": socket.gethostname()})
    _finish()
    return 0


def _finish() -> None:
    """Leave the process group cleanly (the Trainer leaves it open)."""
    dist = sys.modules.get("torch.distributed")
    try:
        if dist is not None and dist.is_available() and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
    except Exception:
        pass


if __name__ == "__main__":
    sys.exit(main())
