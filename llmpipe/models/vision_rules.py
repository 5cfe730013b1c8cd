"""Pre-flight rules of vision-language training: a vision.* value must be able to act on the model it is set for,
a dataset with media columns needs a model that reads them, and a VLM trains only where llmpipe can train it.
The model's family comes from its config (builtin:tiny_vl is qwen2_vl; a local folder's config.json; a hub id
that is not local is judged when it loads). Registered by llmpipe.pipeline.preflight. No torch."""
from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

from llmpipe.config.families.vision import VisionConfig
from llmpipe.config.rulebook import rule
from llmpipe.config.rules._common import fmt, get, problem, stage
from llmpipe.models.media_rules import AUDIO_FAMILIES, AUDIO_REFUSED, AUDIO_STAGES
from llmpipe.models.vision import FAMILIES
from llmpipe.models.vlm_zoo import SPECS as _VLM_ZOO

TEXT_BUILTINS = ("builtin:tiny", "builtin:tiny-random", "builtin:bench")   # Llama layout
VLM_BUILTINS = {"builtin:tiny_vl": "qwen2_vl", **{name: spec[0] for name, spec in _VLM_ZOO.items()},
                "builtin:tiny-qwen2-audio": "qwen2_audio"}   # an audio-language model, routed like the VLMs
TRAINED_FAMILIES = tuple(FAMILIES)   # the families llmpipe.models.vision and llmpipe.data.mm_plugins have a layer for
VLM_STAGES = ("sft", "pt", "dpo", "kto")
# why the others are refused on a vision-language model (docs/multimodal.md, "Stages")
VLM_REFUSED = {
    "rm": "TRL's RewardTrainer has no image path (it would train on the text and drop the images silently), and "
          "Qwen2-VL has no sequence-classification class for llmpipe's score head",
    "ppo": "llmpipe's PPO loop generates and scores text only: its rollouts, reward model and value head take no "
           "pixel values",
}
VLM_REF_FREE = ("orpo", "simpo")   # pref.loss values whose TRL trainers (experimental ORPO/CPO) get no images
_DEFAULTS = VisionConfig()
# translated older flags: their value arrives through the newer key, which names them in its message
_VIA = {"image_max_pixels": "vision.image_resolution", "video_max_pixels": "vision.video_resolution",
        "freeze_vision_tower": "vision.train_mm_proj_only", "freeze_multi_modal_projector": "vision.train_mm_proj_only",
        "freeze_language_model": "vision.train_mm_proj_only"}
_TRANSLATED = ("image_resolution", "video_resolution", "train_mm_proj_only")
# what each flag needs from the model family; None: any vision-language family llmpipe trains
_ONLY = {"image_do_pan_and_scan": ("gemma3", "Gemma 3's pan-and-scan cropping"),
         "crop_to_patches": ("internvl", "InternVL's tiling into patches")}
# video and audio settings: llmpipe.models.media_rules says which family each one acts on


def model_family(cfg) -> tuple[str | None, bool | None]:
    """(model_type, is a vision-language model) of model.name_or_path, or (None, None) when not known here."""
    ref = str(get(cfg, "model.name_or_path", "") or "")
    if ref in VLM_BUILTINS:
        return VLM_BUILTINS[ref], True
    if ref in TEXT_BUILTINS:
        return "llama", False
    path = Path(ref).expanduser()
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, None
    if not isinstance(config, dict):
        return None, None
    return str(config.get("model_type") or "?"), (config.get("vision_config") is not None
                                                   or config.get("audio_config") is not None)   # audio: Qwen2-Audio


def _changed(cfg) -> list[tuple[str, object]]:
    out = []
    for f in fields(VisionConfig):
        if f.name in _TRANSLATED:
            continue
        value = get(cfg, f"vision.{f.name}")
        if value is not None and value != getattr(_DEFAULTS, f.name):
            out.append((f.name, value))
    return out


def _name(key: str) -> str:
    return f"vision.{key}" + (f" (set directly or through {_VIA[key]})" if key in _VIA else "")


@rule("vision-flag-fits-model", keys=[f"vision.{f.name}" for f in fields(VisionConfig)] + ["model.name_or_path"],
      bad=[["vision.image_max_pixels=4096"], ["vision.freeze_vision_tower=false"],
           ["model.name_or_path=builtin:tiny_vl", "vision.image_do_pan_and_scan=true"],
           ["model.name_or_path=builtin:tiny-llava", "vision.crop_to_patches=true"],
           ["model.name_or_path=builtin:tiny_vl", "vision.use_audio_in_video=true"],
           ["model.name_or_path=builtin:tiny_vl", "vision.audio_sampling_rate=8000"],
           ["model.name_or_path=builtin:tiny-qwen2-audio", "vision.image_max_pixels=4096"],
           ["model.name_or_path=builtin:tiny-qwen2-audio", "vision.audio_sampling_rate=7"]],
      good=[["vision.image_max_pixels=589824"], ["model.name_or_path=builtin:tiny_vl", "vision.image_max_pixels=4096"],
            ["model.name_or_path=builtin:tiny_vl", "vision.video_fps=1.0", "vision.video_max_pixels=3136"],
            ["model.name_or_path=builtin:tiny_vl", "vision.freeze_vision_tower=false"],
            ["model.name_or_path=builtin:tiny-gemma3-vl", "vision.image_do_pan_and_scan=true"],
            ["model.name_or_path=builtin:tiny-internvl", "vision.crop_to_patches=true"],
            ["model.name_or_path=builtin:tiny-qwen2-audio", "vision.audio_sampling_rate=8000",
             "vision.freeze_multi_modal_projector=false"],
            ["model.name_or_path=builtin:tiny-qwen2-5-omni", "vision.use_audio_in_video=true",
             "vision.image_max_pixels=4096", "vision.audio_sampling_rate=8000"]])
def flag_fits_model(cfg, env):
    """A vision.* value must be able to act on the loaded model: none on a text-only model; pan-and-scan (Gemma 3)
    and crop_to_patches (InternVL) only in their families; video and audio settings only where the family reads
    videos / audio (llmpipe.models.media_rules; never accepted and ignored)."""
    from llmpipe.models.media_rules import MEDIA_KEYS, audio_rate_problem, why_not

    family, vlm = model_family(cfg)
    ref = get(cfg, "model.name_or_path")
    for key, value in _changed(cfg):
        if vlm is False:
            yield problem("vision-flag-fits-model", f"vision.{key}", value,
                          f"{_name(key)} has nothing to act on: {ref} is a text-only model ({family})",
                          f"the default ({getattr(_DEFAULTS, key)}) for a text-only model",
                          "a vision-language model such as model=tiny_vl, or drop the setting")
        elif key in _ONLY and family != _ONLY[key][0]:
            yield problem("vision-flag-fits-model", f"vision.{key}", value,
                          f"means nothing for {ref} ({family or 'family not known here'}): it is "
                          f"{_ONLY[key][1]}", f"false (only {_ONLY[key][0]} models use it)", f"vision.{key}=false")
        elif key in MEDIA_KEYS and why_not(key, family):
            yield problem("vision-flag-fits-model", f"vision.{key}", value,
                          f"{_name(key)} could not act on {ref}: {why_not(key, family)} (docs/multimodal.md)",
                          f"the default ({getattr(_DEFAULTS, key)})", f"drop vision.{key}")
        elif key == "audio_sampling_rate" and audio_rate_problem(str(ref), value):
            yield problem("vision-flag-fits-model", f"vision.{key}", value,
                          f"cannot feed {ref}: {audio_rate_problem(str(ref), value)} (docs/multimodal.md, Audio)",
                          "a rate such as 8000, 16000, 22050, 44100 or 48000", f"vision.{key}=16000")


@rule("vision-freeze-all", keys=["vision.freeze_vision_tower", "vision.freeze_multi_modal_projector",
                                 "vision.freeze_language_model", "vision.train_mm_proj_only"],
      bad=[["model.name_or_path=builtin:tiny_vl", "train.do_train=true", "vision.freeze_language_model=true"]],
      good=[["model.name_or_path=builtin:tiny_vl", "vision.freeze_language_model=true",
             "vision.freeze_multi_modal_projector=false"]])
def freeze_all(cfg, env):
    """The vision switches must leave something to train on a vision-language model."""
    if model_family(cfg)[1] is not True or not get(cfg, "train.do_train", False):
        return
    v = [get(cfg, f"vision.{k}") for k in ("freeze_vision_tower", "freeze_multi_modal_projector",
                                           "freeze_language_model")]
    if all(v):
        yield problem("vision-freeze-all", "vision.freeze_language_model", True,
                      "with the vision tower and the projector frozen too, nothing would train",
                      "false, or unfreeze the tower or the projector", "vision.freeze_multi_modal_projector=false")


def _unsupported(cfg, family, what: str) -> str:
    return (f"{get(cfg, 'model.name_or_path')} is a vision-language model of the family {family!r}, which llmpipe has "
            f"no multimodal layer for (its placeholder expansion, forward inputs and module groups), so it {what} "
            "(docs/multimodal.md)")


@rule("vision-stage", keys=["train.stage", "model.name_or_path", "pref.loss"],
      bad=[["model.name_or_path=builtin:tiny_vl", "train.stage=ppo", "ppo.reward_model=builtin:tiny",
            "ppo.reward_model_type=full", "train.do_train=true"],
           ["model.name_or_path=builtin:tiny_vl", "train.stage=rm", "train.do_train=true"],
           ["model.name_or_path=builtin:tiny_vl", "train.stage=dpo", "pref.loss=orpo", "train.do_train=true"],
           ["model.name_or_path=builtin:tiny-qwen2-audio", "train.stage=kto", "train.do_train=true"],
           ["model.name_or_path=builtin:tiny-qwen2-5-omni", "train.stage=dpo", "train.do_train=true"]],
      good=[["model.name_or_path=builtin:tiny_vl", "train.stage=sft"],
            ["model.name_or_path=builtin:tiny_vl", "train.stage=dpo", "pref.loss=ipo"]])
def vlm_stage(cfg, env):
    """A vision-language model trains with sft and dpo/kto (images) or pt (text): dpo's DPOTrainer losses and kto
    get the images through llmpipe.training.mm_preference. rm (TRL's RewardTrainer has no image path), ppo (text
    rollouts and rewards) and the ORPO/SimPO trainers would drop the images, so they are refused."""
    family, vlm = model_family(cfg)
    if vlm is True and family not in TRAINED_FAMILIES and get(cfg, "train.do_train", False):
        yield problem("vision-stage", "model.name_or_path", get(cfg, "model.name_or_path"),
                      _unsupported(cfg, family, "does not train here"), fmt(TRAINED_FAMILIES), "model=tiny_vl")
        return
    if vlm is not True or not get(cfg, "train.do_train", False):
        return
    if family in AUDIO_FAMILIES and stage(cfg) not in AUDIO_STAGES:   # llmpipe.models.media_rules
        yield problem("vision-stage", "train.stage", stage(cfg),
                      f"is not available for the audio-language model {get(cfg, 'model.name_or_path')} ({family}): "
                      f"{AUDIO_REFUSED} (docs/multimodal.md, Audio)", fmt(AUDIO_STAGES), "train.stage=sft")
        return
    if stage(cfg) == "dpo" and get(cfg, "pref.loss") in VLM_REF_FREE:
        yield problem("vision-stage", "pref.loss", get(cfg, "pref.loss"),
                      f"is not available for the vision-language model {get(cfg, 'model.name_or_path')} ({family}): "
                      "TRL's ORPO/CPO trainers do not pass images (docs/multimodal.md)",
                      "a DPOTrainer loss (sigmoid, ipo, hinge, ...) or kto_pair", "pref.loss=sigmoid")
    if stage(cfg) in VLM_STAGES:
        return
    why = VLM_REFUSED.get(stage(cfg), "its trainer loads a text-only causal LM and does not pass images")
    yield problem("vision-stage", "train.stage", stage(cfg),
                  f"is not available for the vision-language model {get(cfg, 'model.name_or_path')} ({family}): "
                  f"{why} (docs/multimodal.md)", fmt(VLM_STAGES), "train.stage=sft")


@rule("vision-data-media", keys=["data.dataset", "data.eval_dataset", "model.name_or_path"],
      bad=[["data.dataset=vlm_colours"], ["data.dataset=vlm_motion"],
           ["model.name_or_path=builtin:tiny_vl", "data.dataset=vlm_colours",
                                          "train.stage=pt"],
           ["model.name_or_path=builtin:tiny_vl", "data.dataset=audio_tones"],
           ["model.name_or_path=builtin:tiny-qwen2-audio", "data.dataset=vlm_colours"]],
      good=[["model.name_or_path=builtin:tiny_vl", "data.dataset=vlm_colours"], ["data.dataset=demo_sft"],
            ["model.name_or_path=builtin:tiny-qwen2-audio", "data.dataset=audio_tones"],
            ["model.name_or_path=builtin:tiny_vl", "data.dataset=vlm_motion"],
            ["model.name_or_path=builtin:tiny-qwen2-5-omni", "data.dataset=omni_motion"]])
def data_media(cfg, env):
    """A dataset registered with images/videos/audios columns needs a model that reads them: a text-only model is
    refused (it would train on the placeholder text), and so are videos and audios and images outside sft."""
    from llmpipe.data.registry import find_dataset
    from llmpipe.models.media_rules import readable_columns, video_families

    family, vlm = model_family(cfg)
    if vlm is None:
        return
    ddir = get(cfg, "data.dataset_dir", "data")
    for key in ("data.dataset", "data.eval_dataset"):
        for name in get(cfg, key, []):
            try:
                spec = find_dataset(name, ddir)
            except Exception:   # noqa: BLE001  (an unreadable registry is data-dataset-registered's to report)
                continue
            cols = [c for c in ("images", "videos", "audios") if spec is not None and spec.columns.get(c)]
            if not cols:
                continue
            if vlm and family not in TRAINED_FAMILIES:
                yield problem("vision-data-media", key, name, _unsupported(cfg, family, "reads no image data"),
                              f"a model of a supported family ({fmt(TRAINED_FAMILIES)})", "model=tiny_vl")
                continue
            if not vlm:
                yield problem("vision-data-media", key, name,
                              f"has {'/'.join(cols)} columns, and {get(cfg, 'model.name_or_path')} is a text-only "
                              f"model ({family}): the media would be ignored",
                              "a vision-language model (model=tiny_vl) or a text dataset", "model=tiny_vl")
            elif family in AUDIO_FAMILIES and (set(cols) - readable_columns(family, stage(cfg))
                                               or get(cfg, "train.do_predict", False) and "audios" in cols):
                yield problem("vision-data-media", key, name,
                              f"has {'/'.join(cols)} columns; {get(cfg, 'model.name_or_path')} ({family}) reads "
                              f"{'/'.join(sorted(readable_columns(family, 'sft')))} only, with train.stage=sft, and "
                              "not in train.do_predict (llmpipe's "
                              "inference takes no audio: the prompts would lose their clips; docs/multimodal.md)",
                              "an audio dataset with train.stage=sft, without train.do_predict", "drop it")
            elif set(cols) - readable_columns(family, stage(cfg)):
                yield problem("vision-data-media", key, name,
                              f"has {'/'.join(c for c in cols if c not in readable_columns(family, stage(cfg)))} "
                              f"columns that {family} does not read with train.stage={stage(cfg)} (videos: "
                              f"{', '.join(video_families())} with sft; docs/multimodal.md)",
                              "a dataset whose media the model reads", "drop it")
            elif "videos" in cols and get(cfg, "train.do_predict", False) and (
                    key == "data.eval_dataset" or not get(cfg, "data.eval_dataset", [])):
                yield problem("vision-data-media", key, name,
                              "has videos, and train.do_predict would prompt with its held-out rows: llmpipe's "
                              "inference takes images only, so the prompts would keep a bare <video> "
                              "(docs/multimodal.md)", "held-out rows without videos (data.eval_dataset), or "
                              "train.do_predict=false", "train.do_predict=false")
            elif stage(cfg) not in ("sft", "dpo", "kto"):
                yield problem("vision-data-media", key, name,
                              f"has images, and train.stage={stage(cfg)} does not read them (sft, dpo and kto do)",
                              "train.stage=sft, dpo or kto", "train.stage=sft")
