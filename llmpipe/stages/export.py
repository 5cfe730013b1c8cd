"""export: write the final model into export.dir (sharded at export.size GB) with its tokenizer and a model
card. The folder is replaced atomically; a folder that holds something else is never overwritten."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from llmpipe.stages.base import StageContext

MARKER = "llmpipe-export.json"


class ExportError(Exception):
    pass


def check_destination(dest: Path) -> None:
    if dest.exists() and any(dest.iterdir()) and not (dest / MARKER).exists():
        raise ExportError(f"export.dir={dest} already exists and holds files llmpipe did not write; "
                          "choose an empty or new folder")


def run(ctx: StageContext) -> dict:
    dest = Path(str(ctx.obj.export.dir)).expanduser().absolute()
    check_destination(dest)
    src = ctx.input("model") / "model"
    previous = dest / MARKER
    if previous.exists() and json.loads(previous.read_text()).get("fingerprint") == ctx.fingerprint:
        ctx.log(f"{dest} already holds this export")   # decided before importing torch: re-runs stay cheap
        return {"metrics": {}, "unchanged": True}

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model = AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.float32)
    model.save_pretrained(str(tmp), max_shard_size=f"{int(ctx.obj.export.size * 1024)}MB")
    AutoTokenizer.from_pretrained(str(src)).save_pretrained(str(tmp))
    (tmp / "README.md").write_text(model_card(ctx))
    (tmp / MARKER).write_text(json.dumps({"fingerprint": ctx.fingerprint, "source": str(src)}, indent=2))
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, dest)
    ctx.log(f"exported to {dest}")
    return {"metrics": {}}


def model_card(ctx: StageContext) -> str:
    o = ctx.obj
    return (f"# {Path(str(o.export.dir)).name}\n\nFine-tuned with llmpipe.\n\n"
            f"- base model: `{o.model.name_or_path}`\n- stage: {o.train.stage} ({o.train.finetuning_type})\n"
            f"- data: {o.data.dataset}\n- fingerprint: `{ctx.fingerprint}`\n")
