"""predict on a vision-language family other than Qwen2-VL (chat, serve and predict share llmpipe.infer.mm_request
and the backends, tested on tiny_vl in test_vlm_infer.py): builtin:tiny-gemma3-vl, untrained, through the real
pipeline in-process (load -> predict, 0 training steps), 2 held-out rows under LF's gemma3 template. Each prompt
carries Gemma 3's own expansion of its image, and the backend hands the model the images' pixel values with
Gemma 3's extra input (token_type_ids, 1 on the soft image tokens) for every row."""
from __future__ import annotations

import json

import pytest
import test_methods

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.slow
store = test_methods.store   # a fixture: a store that shares the built-in models of the session


def test_predict_reads_the_images_on_gemma3(store, monkeypatch):
    from llmpipe.infer import hf_backend

    seen = []
    original = hf_backend.HFBackend._images

    def spy(self, prompts, ids):   # what the backend gives generate() besides the token ids
        out = original(self, prompts, ids)
        seen.append({k: (tuple(v.shape), v.sum().item()) for k, v in out.items()})
        return out

    monkeypatch.setattr(hf_backend.HFBackend, "_images", spy)
    test_methods.run(store, "model.name_or_path=builtin:tiny-gemma3-vl", "data.dataset=vlm_colours",
                     "data.eval_dataset=vlm_colours_eval", "data.template=gemma3", "data.max_samples=2",
                     "train.do_train=false", "train.do_predict=true", "train.predict_with_generate=true",
                     "generate.max_new_tokens=2")
    (pred,) = (store / "predict").iterdir()
    rows = [json.loads(line) for line in (pred / "generated_predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["label"] in ("black", "blue", "green", "red") for r in rows)
    image = "\n\n<start_of_image>" + "<image_soft_token>" * 4 + "<end_of_image>\n\n"
    assert all(r["prompt"].count(image) == 1 and "<start_of_turn>user\n" in r["prompt"] for r in rows), rows
    assert json.loads((pred / "predict_results.json").read_text())["predict_samples"] == 2
    # one batch of both rows: two 56-px images, and the soft-token mask (4 per row) that Gemma 3 attends by
    assert len(seen) == 1 and seen[0]["pixel_values"][0] == (2, 3, 56, 56), seen
    assert seen[0]["token_type_ids"][1] == 8, seen
