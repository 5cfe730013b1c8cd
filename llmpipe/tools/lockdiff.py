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
    for name in dict.fromkeys([*a["stages"], *b["stages"]]):
        sa, sb = a["stages"].get(name), b["stages"].get(name)
        if sa is None or sb is None:
            print(f"{name}: only in {'B' if sa is None else 'A'}")
            continue
        same = sa["fingerprint"] == sb["fingerprint"]
        print(f"{name}: {'same' if same else 'different'} fingerprint ({sa['status']} / {sb['status']})")
        if not same:
            ra, rb = sa.get("reads") or {}, sb.get("reads") or {}
            for key in sorted(set(ra) | set(rb)):
                if ra.get(key) != rb.get(key):
                    print(f"    {key}: {ra.get(key)!r} -> {rb.get(key)!r}")
            if sa.get("inputs") != sb.get("inputs"):
                print(f"    inputs: {sa.get('inputs')} -> {sb.get('inputs')}")
    return 0
