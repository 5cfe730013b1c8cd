"""M-RoPE position ids of Qwen-VL image rows, computed by the collator once per batch.

Qwen2-VL, Qwen2.5-VL and Qwen3-VL place each token with three position ids (temporal, height, width): text tokens
count on (the same number in all three), the tokens of an image span its grid of merged patches starting at the
position after the preceding text, and the text after the image resumes at that start plus the larger side of the
grid. Without ``position_ids`` the model computes them in its forward (``get_rope_index``: a Python loop over the
rows, token groups and images with a dozen small tensor ops each, measured at 5 % of a training step of the bench's
tiny Qwen2-VL). ``image_positions`` computes the same ids in plain Python on the collated ids and builds one tensor;
the collator (llmpipe.training.collators.MultimodalCollator) passes it as ``position_ids`` [3, batch, length], the
shape the model's own computation has, so the forward uses them as they are (the attention mask still comes from
``attention_mask``). Pad positions get 0, as in the model. Batches with videos keep the model's own computation
(the families space video frames differently: Qwen2.5-VL by seconds per grid, Qwen3-VL with timestamps), as do
batches without images (the model's plain count) and every other family.
"""
from __future__ import annotations

FAMILIES = frozenset({"qwen2_vl", "qwen3_vl"})   # llmpipe.data.mm_plugins names whose models use these positions


def image_positions(input_ids, type_ids, image_grid_thw, merge: int, attention_mask=None):
    """[3, batch, length] M-RoPE position ids of a collated batch whose media are images only (``type_ids``: 1 on
    image tokens, 0 on text; ``image_grid_thw``: the grids in token order; ``merge``: the spatial merge size)."""
    import torch

    grids = iter(image_grid_thw.tolist())
    rows = input_ids.shape[0]
    out = [[[0] * input_ids.shape[1] for _ in range(rows)] for _ in range(3)]
    keep = attention_mask.bool().tolist() if attention_mask is not None else None
    for b, types in enumerate(type_ids.tolist()):
        places = [i for i, k in enumerate(keep[b]) if k] if keep is not None else range(len(types))
        kinds = [types[i] for i in places]
        t_ids, h_ids, w_ids = [], [], []
        pos, i = 0, 0
        while i < len(kinds):
            j = i
            while j < len(kinds) and kinds[j] == kinds[i]:
                j += 1
            if kinds[i] == 0:
                t_ids += range(pos, pos + j - i)
                h_ids += range(pos, pos + j - i)
                w_ids += range(pos, pos + j - i)
                pos += j - i
            else:   # one image per run of image tokens, as the model's own grouping has it
                gt, gh, gw = next(grids)
                h, w = gh // merge, gw // merge
                for t in range(gt):
                    for y in range(h):
                        t_ids += [pos + t] * w
                        h_ids += [pos + y] * w
                        w_ids += range(pos, pos + w)
                pos += max(gh, gw) // merge
            i = j
        for axis, ids in enumerate((t_ids, h_ids, w_ids)):
            row = out[axis][b]
            for place, value in zip(places, ids):
                row[place] = value
    return torch.tensor(out, dtype=input_ids.dtype)
