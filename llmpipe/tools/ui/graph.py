"""The stage graph as an SVG picture: one box per stage (status, seconds, short fingerprint), arrows for the
stage inputs, laid out left to right by depth. Shared by the run page and the composer."""
from __future__ import annotations

from html import escape
from typing import Any

W, H, GAP_X, GAP_Y, PAD = 168, 70, 44, 22, 14


def _layers(rows: list[dict[str, Any]], edges: list[tuple[str, str]]) -> dict[str, int]:
    depth = {r["id"]: 0 for r in rows}
    for _ in rows:   # longest path from a source; plan order is topological, one pass usually suffices
        for a, b in edges:
            if a in depth and b in depth and depth[b] < depth[a] + 1:
                depth[b] = depth[a] + 1
    return depth


def _seconds(row: dict[str, Any]) -> str:
    s = row.get("seconds")
    if s is None:
        return ""
    return f"{s:.1f} s" if s < 100 else f"{s / 60:.1f} min"


def svg(rows: list[dict[str, Any]], edges: list[tuple[str, str]], vertical: bool = False) -> str:
    """Left to right; ``vertical``: top to bottom (the composer's narrow column)."""
    if not rows:
        return '<p class="muted">No stages recorded.</p>'
    depth = _layers(rows, edges)
    slots: dict[int, int] = {}
    pos = {}
    for r in rows:
        d, k = depth[r["id"]], slots.get(depth[r["id"]], 0)
        pos[r["id"]] = ((PAD + k * (W + GAP_X), PAD + d * (H + GAP_Y)) if vertical
                        else (PAD + d * (W + GAP_X), PAD + 26 + k * (H + GAP_Y)))
        slots[d] = k + 1
    across, along = max(slots.values()), max(depth.values()) + 1
    if vertical:
        width, height = PAD * 2 + across * (W + GAP_X) - GAP_X + 60, PAD * 2 + along * (H + GAP_Y) - GAP_Y
    else:
        width, height = PAD * 2 + along * (W + GAP_X) - GAP_X, PAD * 2 + 26 + across * (H + GAP_Y) - GAP_Y
    parts = [(f'<svg class="stage-graph" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
              f'role="img" aria-label="stage graph">'),
             ('<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
              'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="arrowhead"/></marker></defs>')]
    for a, b in edges:
        if a not in pos or b not in pos:
            continue
        (xa, ya), (xb, yb) = pos[a], pos[b]
        if vertical:
            if depth[b] - depth[a] == 1 or xa != xb:
                x1, y1, x2, y2 = xa + W / 2, ya + H, xb + W / 2, yb
                mid = (y1 + y2) / 2
                d = f"M{x1},{y1} C{x1},{mid} {x2},{mid} {x2},{y2 - 2}"
            else:   # a skip edge in the same column: an arc to the right of the boxes between
                x1, y1, y2 = xa + W + 4, ya + H / 2, yb + H / 2
                lift = 12 + 8 * (depth[b] - depth[a])
                d = f"M{x1},{y1} C{x1 + lift},{y1} {x1 + lift},{y2} {x1 + 2},{y2}"
        elif depth[b] - depth[a] == 1 or ya != yb:
            x1, y1, x2, y2 = xa + W, ya + H / 2, xb, yb + H / 2
            mid = (x1 + x2) / 2
            d = f"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2 - 2},{y2}"
        else:   # a skip edge on the same row: an arc over the boxes between
            x1, x2, top = xa + W / 2, xb + W / 2, ya - 4
            lift = 12 + 6 * (depth[b] - depth[a])
            d = f"M{x1},{top} C{x1},{top - lift} {x2},{top - lift} {x2},{top - 2}"
        parts.append(f'<path class="edge" d="{d}" marker-end="url(#arrow)"/>')
    for r in rows:
        x, y = pos[r["id"]]
        status = str(r.get("status", ""))
        cls = status.split(" ")[0].replace("(", "")
        fp = str(r.get("fingerprint") or "")
        tip = "\n".join(x for x in (f"{r['id']}: {status}", r.get("label") or "", f"fingerprint {fp}" if fp else "",
                                    f"output {r['output']}" if r.get("output") else "",
                                    f"error {r['error']}" if r.get("error") else "") if x)
        parts.append(f'<g class="node st-{escape(cls)}" data-stage="{escape(r["id"])}" transform="translate({x},{y})">'
                     f'<title>{escape(tip)}</title>'
                     f'<rect width="{W}" height="{H}" rx="6"/>'
                     f'<text x="10" y="20" class="n-id">{escape(r["id"])}</text>'
                     f'<text x="{W - 10}" y="20" class="n-status" text-anchor="end">{escape(status)}</text>'
                     f'<text x="10" y="40" class="n-label">{escape(_clip(r.get("label") or "", 24))}</text>'
                     f'<text x="10" y="59" class="n-fp">{escape(fp[:10])}</text>'
                     f'<text x="{W - 10}" y="59" class="n-sec" text-anchor="end">{escape(_seconds(r))}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n - 1] + "…"
