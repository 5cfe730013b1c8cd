"""The per-family multimodal layer: how one family's ``<image>`` placeholder becomes tokens, and which forward
inputs its model needs besides ``input_ids`` and ``pixel_values``.

A plugin is named like LLaMA-Factory's (the ``mm_plugin`` of the chat templates in llmpipe.data.templates):
``qwen2_vl`` (Qwen2-VL and Qwen2.5-VL), ``qwen3_vl``, ``llava``, ``llava_next``, ``gemma3``, ``intern_vl``. The
model layer (llmpipe.models.vision) decides which plugin a model uses and writes it, with the few config facts the
expansion needs, into ``llmpipe-mm.json`` next to the tokenizer and the image processor; the load stage, the
collator, merge and export read that folder, so a trained and exported model carries its own layer.

Counting is done with the family's own image processor (PIL backend) on each image:

- ``qwen2_vl`` / ``qwen3_vl``: ``<|vision_start|>`` + ``<|image_pad|>`` x (grid_t*grid_h*grid_w / merge_size**2) +
  ``<|vision_end|>``; the model needs ``image_grid_thw`` and ``mm_token_type_ids`` (1 on image tokens, for M-RoPE);
- ``qwen2_omni`` (Qwen2.5-Omni's thinker): the same count, as ``<|vision_bos|>`` + ``<|IMAGE|>`` x n +
  ``<|vision_eos|>``; needs ``image_grid_thw`` only (its audio and videos: llmpipe.data.mm_omni);
- ``llava``: ``<image>`` x ((H/patch)*(W/patch) + additional tokens (1 for a CLIP tower's CLS) - 1 with the
  ``default`` feature strategy);
- ``llava_next``: ``<image>`` x the any-resolution count of transformers' LlavaNextProcessor; needs
  ``image_sizes``;
- ``gemma3``: ``\\n\\n<start_of_image>`` + ``<image_soft_token>`` x mm_tokens_per_image + ``<end_of_image>\\n\\n`` per
  image, and with pan-and-scan (vision.image_do_pan_and_scan) the same block again for every crop, behind
  Gemma 3's own "Here is the original image ..." text; needs ``token_type_ids`` (1 on soft tokens: bidirectional
  attention inside an image);
- ``intern_vl``: ``<img>`` + ``<IMG_CONTEXT>`` x (image_seq_length * tiles) + ``</img>``; the tiles are 1, or the
  crops plus a thumbnail with vision.crop_to_patches;
- ``idefics3`` (llmpipe's name: LLaMA-Factory has none): per tile ``<fake_token_around_image><row_i_col_j>`` +
  ``<image>`` x image_seq_len, then the global image; needs ``pixel_attention_mask`` (pixel_values are 5-D).
- ``smolvlm`` (llmpipe's name: LLaMA-Factory has none): Idefics3's layout; the text of transformers' SmolVLMProcessor
  (its ``get_image_prompt_string``, with the rows and columns of tiles SmolVLM's image processor reports), built
  here because that processor needs a torchvision video processor.

Where transformers' composite processor can be built without torchvision (LLaVA, LLaVA-NeXT, Gemma 3, Idefics3) the
expansion is that processor's own ``replace_image_token``; for the others (the Qwen-VL family and InternVL,
whose processors require a torchvision video processor) it is the formula above, the same one transformers uses.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FACTS_FILE = "llmpipe-mm.json"
PROCESSOR_FILE = "preprocessor_config.json"


@dataclass(frozen=True)
class Plugin:
    name: str                    # LLaMA-Factory's plugin name
    image_token: str             # the token that stands for image features (never carries a label)
    composite: bool = False      # transformers' composite processor builds without torchvision
    outputs: tuple[str, ...] = ("pixel_values",)   # image-processor outputs the model's forward takes
    type_ids: str | None = None  # name of the 0/1 image-token mask the model needs, if any
    measure: tuple[tuple[str, object], ...] = ()   # extra keywords when measuring one image

    def expand(self, mm: ImageTokens, out: dict, i: int = 0) -> str:
        """The text that replaces the i-th image's placeholder, given the image processor's output ``out``."""
        if mm.processor is not None:
            return mm.processor.replace_image_token(out, i)
        facts = mm.facts
        if self.name in ("qwen2_vl", "qwen3_vl", "qwen2_omni"):   # qwen2_omni: <|vision_bos|>/<|vision_eos|>
            grid = out["image_grid_thw"][i]
            merge = int(getattr(mm.image_processor, "merge_size", 2) or 1)
            n = int(grid[0] * grid[1] * grid[2]) // (merge * merge)
            return facts["vision_start"] + self.image_token * n + facts["vision_end"]
        if self.name == "smolvlm":   # SmolVLMProcessor.replace_image_token, without its video processor
            from transformers.models.smolvlm import processing_smolvlm

            rows = [r for per_sample in out["rows"] for r in per_sample]
            cols = [c for per_sample in out["cols"] for c in per_sample]
            return processing_smolvlm.get_image_prompt_string(
                int(rows[i]), int(cols[i]), int(facts["image_seq_len"]), fake_token_around_image=facts["fake_image_token"],
                image_token=self.image_token, global_image_token=facts["global_image_token"])
        if self.name == "intern_vl":
            tiles = int(out["num_patches"][i]) if "num_patches" in out else 1
            return facts["start_image_token"] + self.image_token * (facts["image_seq_length"] * tiles) + \
                facts["end_image_token"]
        raise ValueError(f"no expansion for {self.name}")


PLUGINS = {p.name: p for p in (
    Plugin("qwen2_vl", "<|image_pad|>", outputs=("pixel_values", "image_grid_thw"), type_ids="mm_token_type_ids"),
    Plugin("qwen3_vl", "<|image_pad|>", outputs=("pixel_values", "image_grid_thw"), type_ids="mm_token_type_ids"),
    Plugin("qwen2_omni", "<|IMAGE|>", outputs=("pixel_values", "image_grid_thw")),   # llmpipe.data.mm_omni
    Plugin("llava", "<image>", composite=True),
    Plugin("llava_next", "<image>", composite=True, outputs=("pixel_values", "image_sizes")),
    Plugin("llava_next_video", "<image>", outputs=("pixel_values", "image_sizes")),   # images: LlavaNextProcessor's
    Plugin("gemma3", "<image_soft_token>", composite=True, type_ids="token_type_ids"),
    Plugin("intern_vl", "<IMG_CONTEXT>"),
    Plugin("idefics3", "<image>", composite=True, outputs=("pixel_values", "pixel_attention_mask"),
           measure=(("return_row_col_info", True),)),
    Plugin("smolvlm", "<image>", outputs=("pixel_values", "pixel_attention_mask"),
           measure=(("return_row_col_info", True),)),
)}


@dataclass
class ImageTokens:
    """How a model's images become tokens: its image processor, its family's plugin and the pre-resize."""
    image_processor: Any
    image_token: str = "<|image_pad|>"
    vision_start: str = "<|vision_start|>"
    vision_end: str = "<|vision_end|>"
    max_pixels: int | None = None     # vision.image_max_pixels
    min_pixels: int | None = None     # vision.image_min_pixels
    family: str = "qwen2_vl"          # the plugin's name
    processor: Any = None             # transformers' composite processor, where it builds without torchvision
    facts: dict = field(default_factory=dict)

    def __post_init__(self):
        self.facts = {"vision_start": self.vision_start, "vision_end": self.vision_end, **self.facts}

    @property
    def plugin(self) -> Plugin:
        return PLUGINS[self.family]

    def measure(self, img) -> dict:
        """The image processor's output for one image (numpy)."""
        return self.image_processor(images=[img], return_tensors="np", **dict(self.plugin.measure))

    def text_for(self, img) -> tuple[str, int]:
        """(the expanded placeholder, its image-feature tokens) of one pre-resized image."""
        text = self.plugin.expand(self, self.measure(img), 0)
        return text, text.count(self.image_token)

    def count(self, img) -> int:
        """Visual tokens of ``img`` (already pre-resized) for this model."""
        return self.text_for(img)[1]

    def prepare(self, ref, root) -> tuple[bytes, int, str]:
        """(PNG bytes, visual tokens, expanded placeholder) of image reference ``ref``; MediaError when it cannot
        be used."""
        from llmpipe.data.media import MediaError
        from llmpipe.data.mm_media import open_image, pre_resize, to_png

        img = pre_resize(open_image(ref, root), self.max_pixels, self.min_pixels)
        try:
            text, n = self.text_for(img)
        except ValueError as e:   # e.g. an aspect ratio the processor refuses
            raise MediaError(f"the image processor refuses it ({e})") from None
        return to_png(img), n, text

    def batch_inputs(self, images: list, input_ids, image_id: int) -> dict:
        """The forward inputs of a batch's images (in token order) besides input_ids: pixel values, the family's
        extras, and its image-token mask (also without images: the Qwen-VL models need it on text too)."""
        out = {}
        if self.plugin.type_ids:
            out[self.plugin.type_ids] = (input_ids == image_id).long()
        if images:
            px = self.image_processor(images=images, return_tensors="pt")
            out.update({k: px[k] for k in self.plugin.outputs})
        return out


def read_facts(folder: str | Path) -> dict | None:
    path = Path(folder) / FACTS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def _model_type(folder: Path) -> str | None:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None


def load(folder: str | Path, max_pixels: int | None = None, min_pixels: int | None = None
         ) -> ImageTokens | None:
    """The ImageTokens of the processor folder ``folder`` (llmpipe-mm.json + the image processor, and the
    composite processor where it builds), or None when the folder holds no image processor. A folder without
    llmpipe-mm.json (an image processor saved before the family layer) is read as Qwen2-VL; ValueError when its
    config.json names another family."""
    folder = Path(folder)
    if not (folder / PROCESSOR_FILE).is_file():
        return None
    from transformers import AutoImageProcessor

    facts = read_facts(folder)
    if facts is None:   # an image processor saved before the family layer: Qwen2-VL's, or refused
        kind = _model_type(folder)
        if kind not in (None, "qwen2_vl"):
            raise ValueError(f"{folder} holds a {kind} model's image processor but no {FACTS_FILE}: llmpipe cannot "
                             "tell how its images expand (llmpipe.models.vision.publish_processor writes it)")
        facts = {"plugin": "qwen2_vl"}
    plugin = PLUGINS[facts["plugin"]]
    processor = None
    if plugin.composite:
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(str(folder))
        image_processor = processor.image_processor
    else:
        image_processor = AutoImageProcessor.from_pretrained(str(folder))
    if plugin.name == "llava_next_video":   # its processor needs torchvision; images expand as LLaVA-NeXT's do
        from llmpipe.data.mm_video_layouts import llava_next_images

        processor = llava_next_images(image_processor, facts)
    return ImageTokens(image_processor, image_token=plugin.image_token, max_pixels=max_pixels, min_pixels=min_pixels,
                       family=plugin.name, processor=processor, facts=facts)
