"""``llmpipe-tools lock A B``: why stages differ between two jobs (their lock files): status, fingerprint,
and the config values a stage read that changed."""
from __future__ import annotations

import argparse
from pathlib import Path


def _lock(path: str) -> dict:
    from llmpipe.pipeline.lockfile import LockFile, read

    p = Path(path)
    return read(p / LockFile.NAME if p.is_dir() else p)


def setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", help="a lock file or a job folder")
    p.add_argument("b", nargs="?", help="another lock file or job folder to compare with")


def run(args: argparse.Namespace) -> int:
    a = _lock(args.a)
    if args.b is None:
        for name, st in a["stages"].items():
            print(f"{name:<14} {st['status']:<7} {st.get('seconds', 0):>8}s  {st['fingerprint'][:12]}  {st.get('output', '')}")
        return 0
    b = _lock(args.b)
    for d in compare(a, b):
        if d["only_in"]:
            print(f"{d['stage']}: only in {d['only_in']}")
            continue
        print(f"{d['stage']}: {'same' if d['same'] else 'different'} fingerprint ({d['status'][0]} / {d['status'][1]})")
        for key, (va, vb) in d["reads"].items():
            print(f"    {key}: {va!r} -> {vb!r}")
        if d["inputs"] is not None:
            print(f"    inputs: {d['inputs'][0]} -> {d['inputs'][1]}")
    return 0


def compare(a: dict, b: dict) -> list[dict]:
    """Per stage of two lock files (A's order, then B's own): {'stage', 'only_in' ('A', 'B' or None), 'same'
    (fingerprint), 'status' (A's, B's), 'reads' {key: (A's, B's)} of the values it read that changed, 'inputs'
    ((A's, B's) input identities when they changed, else None)}. ``llmpipe-tools ui`` shows the same."""
    out = []
    for name in dict.fromkeys([*a["stages"], *b["stages"]]):
        sa, sb = a["stages"].get(name), b["stages"].get(name)
        if sa is None or sb is None:
            out.append({"stage": name, "only_in": "B" if sa is None else "A", "same": False,
                        "status": ((sa or {}).get("status"), (sb or {}).get("status")), "reads": {}, "inputs": None})
            continue
        same = sa["fingerprint"] == sb["fingerprint"]
        reads = {}
        if not same:
            ra, rb = sa.get("reads") or {}, sb.get("reads") or {}
            reads = {k: (ra.get(k), rb.get(k)) for k in sorted(set(ra) | set(rb)) if ra.get(k) != rb.get(k)}
        changed = not same and sa.get("inputs") != sb.get("inputs")
        out.append({"stage": name, "only_in": None, "same": same, "status": (sa["status"], sb["status"]),
                    "reads": reads, "inputs": (sa.get("inputs"), sb.get("inputs")) if changed else None})
    return out
