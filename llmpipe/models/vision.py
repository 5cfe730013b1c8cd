"""Vision-language models: recognising one, the class it loads with, and its image processor.

A model is a vision-language model (VLM) when its config has a ``vision_config`` (Qwen2-VL and most
image-text-to-text families). It loads with its own class through ``AutoModelForImageTextToText`` (never
``AutoModelForCausalLM``, which would drop or misplace the vision tower). Its processor is the image processor
saved next to the tokenizer (``preprocessor_config.json``) plus the tokenizer: the project's environment has no
torchvision, so the composite Qwen2-VL processor (which insists on a torchvision video processor) cannot be
built; the image processor's PIL backend and llmpipe's own placeholder expansion (llmpipe.data.mm_tokenize)
do its work. ``FAMILIES`` names the module groups the vision.freeze_* switches act on.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmpipe.errors import UserError

PROCESSOR_FILE = "preprocessor_config.json"


class VisionModelError(UserError):
    """A vision-language model llmpipe cannot train as asked (the message names its family)."""


@dataclass(frozen=True)
class Family:
    name: str                      # the family's name in messages (model_type)
    vision: tuple[str, ...]        # module-name prefixes of the vision tower (without the projector)
    projector: tuple[str, ...]     # of the projector / merger
    language: tuple[str, ...]      # of the language model (lm_head included)
    image_token: str = "<|image_pad|>"
    vision_start: str = "<|vision_start|>"
    vision_end: str = "<|vision_end|>"


def _module(*parts: str) -> str:
    """A dotted module name (kept apart from config paths such as model.*, which read alike)."""
    return ".".join(parts)


FAMILIES = {
    "qwen2_vl": Family("qwen2_vl", vision=(_module("model", "visual", "patch_embed"), _module("model", "visual", "blocks")),
                       projector=(_module("model", "visual", "merger"),),
                       language=(_module("model", "language_model"), "lm_head")),
}


def _field(config: Any, key: str):
    return config.get(key) if isinstance(config, dict) else getattr(config, key, None)


def is_vlm_config(config: Any) -> bool:
    """Whether a model config (object or config.json dict) describes a vision-language model."""
    return _field(config, "vision_config") is not None


def model_type(config: Any) -> str:
    return str(_field(config, "model_type") or "?")


def family(config: Any) -> Family:
    """The freeze/LoRA groups of a VLM's family; a clear error for a family llmpipe does not train yet."""
    kind = model_type(config)
    if kind not in FAMILIES:
        raise VisionModelError(f"model_type {kind!r} is a vision-language model llmpipe does not train yet; "
                               f"supported: {', '.join(sorted(FAMILIES))} (see docs/multimodal.md)")
    return FAMILIES[kind]


def model_class(config: Any):
    """The transformers Auto class a model of ``config`` loads with."""
    if is_vlm_config(config):
        from transformers import AutoModelForImageTextToText

        return AutoModelForImageTextToText
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM


def has_processor(folder: str | Path) -> bool:
    return (Path(folder) / PROCESSOR_FILE).is_file()


def load_image_processor(folder: str | Path):
    """The image processor saved in ``folder`` (PIL backend without torchvision)."""
    from transformers import AutoImageProcessor

    return AutoImageProcessor.from_pretrained(str(folder))


def publish_processor(source: str | Path, dest: str | Path) -> bool:
    """Save ``source``'s image processor into ``dest`` (next to the tokenizer); False when it has none."""
    if not has_processor(source):
        return False
    load_image_processor(source).save_pretrained(str(dest))
    return True
