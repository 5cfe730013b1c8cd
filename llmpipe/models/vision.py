"""Vision-language models: recognising one, the class it loads with, its family and its processor.

A model is a vision-language model (VLM) when its config has a ``vision_config``. It loads with its own class
through ``AutoModelForImageTextToText`` (never ``AutoModelForCausalLM``, which would drop or misplace the vision
tower). ``FAMILIES`` (keyed by ``model_type``) names, per family, the module groups the vision.freeze_* switches act
on and the multimodal plugin (llmpipe.data.mm_plugins) that expands its image placeholders. ``publish_processor``
saves the processor next to the tokenizer: the image processor (PIL backend: the project's environment has no
torchvision), transformers' composite processor where it builds without torchvision (LLaVA, LLaVA-NeXT, Gemma 3, Idefics3),
and ``llmpipe-mm.json`` (the plugin and the config facts its expansion needs).
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
    plugin: str = "qwen2_vl"       # llmpipe.data.mm_plugins: how its images become tokens (LLaMA-Factory's name)
    template: str = "qwen2_vl"     # LLaMA-Factory's chat template for it (docs)


def _module(*parts: str) -> str:
    """A dotted module name (kept apart from config paths such as model.*, which read alike)."""
    return ".".join(parts)


_LM = (_module("model", "language_model"), "lm_head")
_TOWER, _PROJ = (_module("model", "vision_tower"),), (_module("model", "multi_modal_projector"),)
_QWEN_VISION = (_module("model", "visual", "patch_embed"), _module("model", "visual", "blocks"))
_MERGER = (_module("model", "visual", "merger"),)
FAMILIES = {
    "qwen2_vl": Family("qwen2_vl", vision=_QWEN_VISION, projector=_MERGER, language=_LM),
    "qwen2_5_vl": Family("qwen2_5_vl", vision=_QWEN_VISION, projector=_MERGER, language=_LM),
    "qwen3_vl": Family("qwen3_vl", vision=(*_QWEN_VISION, _module("model", "visual", "pos_embed"),
                                           _module("model", "visual", "deepstack_merger_list")),
                       projector=_MERGER, language=_LM, plugin="qwen3_vl", template="qwen3_vl"),
    "llava": Family("llava", vision=_TOWER, projector=_PROJ, language=_LM, plugin="llava", template="llava"),
    # model.image_newline (a bare parameter, not a module) is in no group, as in LLaMA-Factory: full fine-tuning
    # trains it, LoRA and freeze tuning leave it (PEFT's modules_to_save takes modules only)
    "llava_next": Family("llava_next", vision=_TOWER, projector=_PROJ, language=_LM, plugin="llava_next",
                         template="llava_next"),
    # LLaVA-NeXT-Video: LLaVA-NeXT's layout (model.vision_resampler, the frames' pooling, has no parameters)
    "llava_next_video": Family("llava_next_video", vision=_TOWER, projector=_PROJ, language=_LM,
                               plugin="llava_next_video", template="llava_next_video"),
    "gemma3": Family("gemma3", vision=_TOWER, projector=_PROJ, language=_LM, plugin="gemma3", template="gemma3"),
    "internvl": Family("internvl", vision=_TOWER, projector=_PROJ, language=_LM, plugin="intern_vl",
                       template="intern_vl"),
    # Qwen2-Audio (llmpipe.models.audio): the audio tower is the "vision tower" of the freeze switches, as in
    # LLaMA-Factory (vision.freeze_vision_tower freezes model.audio_tower)
    "qwen2_audio": Family("qwen2_audio", vision=(_module("model", "audio_tower"),), projector=_PROJ, language=_LM,
                          plugin="qwen2_audio", template="qwen2_audio"),
    # Qwen2.5-Omni's thinker: two towers; its projectors are the vision merger and the audio tower's output layer
    # (LLaMA-Factory's keys); the audio tower is part of the "vision tower" of the freeze switches, as for Qwen2-Audio
    "qwen2_5_omni_thinker": Family("qwen2_5_omni_thinker", vision=(*_QWEN_VISION, _module("model", "audio_tower")),
                                   projector=(*_MERGER, _module("model", "audio_tower", "proj")), language=_LM,
                                   plugin="qwen2_omni", template="qwen2_omni"),
    # Idefics3 (SmolVLM's layout): LLaMA-Factory has no plugin or template for it; llmpipe's plugin is idefics3
    "idefics3": Family("idefics3", vision=(_module("model", "vision_model"),),
                       projector=(_module("model", "connector"),),
                       language=(_module("model", "text_model"), "lm_head"), plugin="idefics3", template="chatml"),
    # SmolVLM (Idefics3's layout): LF has no plugin or template; llmpipe's plugin smolvlm, the model's own chat template
    "smolvlm": Family("smolvlm", vision=(_module("model", "vision_model"),), projector=(_module("model", "connector"),),
                      language=(_module("model", "text_model"), "lm_head"), plugin="smolvlm", template=""),
}


def _field(config: Any, key: str):
    return config.get(key) if isinstance(config, dict) else getattr(config, key, None)


def is_vlm_config(config: Any) -> bool:
    """Whether a model config (object or config.json dict) describes a vision-language model, or an audio-language
    one (``audio_config``: llmpipe.models.audio), which trains through the same multimodal routing."""
    return _field(config, "vision_config") is not None or _field(config, "audio_config") is not None


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
    if _field(config, "audio_config") is not None and _field(config, "vision_config") is None:   # Qwen2-Audio
        from transformers import AutoModelForMultimodalLM

        return AutoModelForMultimodalLM
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


# the files of a published processor (llmpipe.data.mm_plugins reads them back)
PROCESSOR_FILES = (PROCESSOR_FILE, "processor_config.json", "llmpipe-mm.json")


def _token(tok, ident) -> str:
    return tok.convert_ids_to_tokens(int(ident))


def _facts(config: Any, fam: Family, tok, source: Path | None = None, vision: Any = None) -> dict:
    """What the family's placeholder expansion needs from the model config (llmpipe-mm.json)."""
    facts: dict[str, Any] = {"plugin": fam.plugin, "model_type": fam.name}
    ident = getattr(config, "image_token_id", None)
    if ident is None:
        ident = getattr(config, "image_token_index", None)
    facts["image_token_id"] = int(ident)
    if fam.plugin in ("qwen2_vl", "qwen3_vl"):
        facts.update(vision_start=_token(tok, config.vision_start_token_id),
                     vision_end=_token(tok, config.vision_end_token_id))
    elif fam.plugin == "qwen2_omni":   # its tokens, and the feature extractor (llmpipe.data.mm_omni)
        from llmpipe.data.mm_omni import omni_facts

        facts.update(omni_facts(config, tok, source, vision))
    elif fam.plugin == "llava_next_video":   # LlavaNextVideoProcessor's facts: images as LLaVA-NeXT, frames pooled
        vc = config.vision_config
        facts.update(patch_size=int(vc.patch_size), strategy=config.vision_feature_select_strategy,
                     additional_tokens=1 if vc.model_type == "clip_vision_model" else 0,
                     image_token=_token(tok, config.image_token_index),
                     video_token=_token(tok, config.video_token_index),
                     spatial_pool_stride=int(config.spatial_pool_stride))
    elif fam.plugin == "smolvlm":   # what SmolVLMProcessor reads from its tokenizer (with its defaults) and config
        vc = config.vision_config
        facts.update(image_seq_len=int((vc.image_size // vc.patch_size) ** 2 / config.scale_factor ** 2),
                     fake_image_token=getattr(tok, "fake_image_token", None) or "<fake_token_around_image>",
                     global_image_token=getattr(tok, "global_image_token", None) or "<global-img>")
    elif fam.plugin == "intern_vl":
        facts.update(start_image_token=getattr(tok, "start_image_token", None) or "<img>",
                     end_image_token=getattr(tok, "end_image_token", None) or "</img>",
                     image_seq_length=int(config.image_seq_length))
    return facts


def _composite(config: Any, fam: Family, image_processor, tok):
    """transformers' own processor of the families whose processor builds without torchvision, else None."""
    if fam.plugin in ("llava", "llava_next"):
        from transformers import LlavaNextProcessor, LlavaProcessor

        vc = config.vision_config
        cls = LlavaProcessor if fam.plugin == "llava" else LlavaNextProcessor
        return cls(image_processor=image_processor, tokenizer=tok, patch_size=vc.patch_size,
                   vision_feature_select_strategy=config.vision_feature_select_strategy,
                   num_additional_image_tokens=1 if vc.model_type == "clip_vision_model" else 0,   # CLIP's CLS
                   image_token=_token(tok, config.image_token_index))
    if fam.plugin == "gemma3":
        from transformers import Gemma3Processor

        return Gemma3Processor(image_processor=image_processor, tokenizer=tok,
                               image_seq_length=config.mm_tokens_per_image)
    if fam.plugin == "idefics3":
        from transformers import Idefics3Processor

        vc = config.vision_config
        return Idefics3Processor(image_processor=image_processor, tokenizer=tok,
                                 image_seq_len=int((vc.image_size // vc.patch_size) ** 2 / config.scale_factor ** 2))
    return None


def publish_processor(source: str | Path, dest: str | Path, vision: Any = None, tokenizer: Any = None) -> bool:
    """Save ``source``'s processor into ``dest`` (next to the tokenizer); False when it has none.

    From a model folder (the load stage, ``vision`` given): the image processor with the vision.* settings that
    act on it (Gemma 3's ``do_pan_and_scan``, InternVL's ``crop_to_patches``), transformers' composite processor
    where it builds here (LLaVA, LLaVA-NeXT, Gemma 3: ``processor_config.json``, so AutoProcessor reloads it), and
    ``llmpipe-mm.json``: the family's plugin and the facts its expansion needs. From a folder published before
    (merge, export): the same files, copied."""
    import shutil

    from llmpipe.models.audio import publish

    audio = publish(source, dest, vision, tokenizer)   # an audio-language model: its feature extractor
    if audio is not None:
        return audio
    source, dest = Path(source), Path(dest)
    if not has_processor(source):
        return False
    dest.mkdir(parents=True, exist_ok=True)
    if vision is None and (source / PROCESSOR_FILES[-1]).is_file() or not (source / "config.json").is_file():
        for name in PROCESSOR_FILES:
            if (source / name).is_file() and source.resolve() != dest.resolve():
                shutil.copyfile(source / name, dest / name)
        return True
    import json

    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(str(source))
    fam = family(config)
    tok = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(str(source))
    image_processor = load_image_processor(source)
    if vision is not None and fam.plugin == "gemma3":
        image_processor.do_pan_and_scan = bool(vision.image_do_pan_and_scan)
    if vision is not None and fam.plugin == "intern_vl":
        image_processor.crop_to_patches = bool(vision.crop_to_patches)
    composite = _composite(config, fam, image_processor, tok)
    if composite is not None:
        composite.save_pretrained(str(dest))
    image_processor.save_pretrained(str(dest))   # preprocessor_config.json: what AutoImageProcessor reads
    (dest / PROCESSOR_FILES[-1]).write_text(json.dumps(_facts(config, fam, tok, source, vision), indent=2) + "\n")
    return True
