"""Qwen2.5-Omni's thinker (model_type ``qwen2_5_omni_thinker``): images, videos and audio in one row, and a video's
audio track with ``vision.use_audio_in_video``.

transformers' ``Qwen2_5OmniProcessor`` cannot be built here (its Qwen2-VL video processor needs torchvision), so
this module writes what it would write, as LLaMA-Factory's ``qwen2_omni`` plugin does, with the pieces llmpipe
already has:

- **images**: ``<|vision_bos|>`` + ``<|IMAGE|>`` x grid/merge² + ``<|vision_eos|>`` (llmpipe.data.mm_plugins,
  plugin ``qwen2_omni``; the PIL Qwen2-VL image processor); inputs ``pixel_values``, ``image_grid_thw``;
- **audio**: ``<|audio_bos|>`` + ``<|AUDIO|>`` x n + ``<|audio_eos|>``, decoded, resampled and cut to the feature
  extractor's window by llmpipe.data.mm_audio (n = ``((L-1)//2+1-2)//2+1`` for L real mel frames, as the Omni audio
  encoder's ``_get_feat_extract_output_lengths`` counts them); inputs ``input_features``, ``feature_attention_mask``;
- **videos**: sampled and sized by llmpipe.data.mm_video (vision.video_*); ``<|vision_bos|>`` + ``<|VIDEO|>`` x
  grid/merge² + ``<|vision_eos|>``; inputs ``pixel_values_videos``, ``video_grid_thw`` and
  ``video_second_per_grid`` (temporal patch / sampled fps: the M-RoPE time step of a temporal patch);
- **``vision.use_audio_in_video=true``**: the video's audio track (PyAV, through llmpipe.data.mm_audio.decode) is
  one more clip, and the video becomes ``<|vision_bos|><|audio_bos|>`` + per 2-second chunk (the config's
  ``seconds_per_chunk`` at ``position_id_per_seconds`` = 25 positions a second) the chunk's ``<|VIDEO|>`` tokens
  then its ``<|AUDIO|>`` tokens + ``<|audio_eos|><|vision_eos|>``: the text of transformers'
  ``Qwen2_5OmniProcessor.replace_video_with_audio_token``, run here on an object holding what it reads. The batch
  then carries ``use_audio_in_video=True`` (the thinker's get_rope_index lays out these positions only then). A
  video without an audio track is a bad row, with that reason.

The clips of a row (its own ``<audio>`` clips and, with the flag, its videos' tracks) are kept in token order in
the ``audios`` column (float32 samples), the videos' frames in ``videos`` (PNG) as llmpipe.data.mm_video keeps them;
the audio collator (llmpipe.training.mm_audio_collator) asks :class:`OmniTokens` for the images' and videos' inputs.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from llmpipe.data.media import MediaError, expand_placeholders
from llmpipe.data.mm_audio import AudioTokens

KIND = "qwen2_5_omni_thinker"
PLUGIN = "qwen2_omni"
_FE_KEYS = ("feature_size", "sampling_rate", "chunk_length", "hop_length", "n_fft")
# the feature extractor of a thinker folder that names none (builtin:tiny-qwen2-5-omni's): 16 kHz, 128 mel bins, a 4 s
# window (400 mel frames, 100 audio tokens)
FEATURES = {"feature_size": 128, "sampling_rate": 16000, "chunk_length": 4, "hop_length": 160, "n_fft": 400}
_PLACEHOLDERS = re.compile("<audio>|<video>")


def omni_facts(config: Any, tok, source=None, vision: Any = None) -> dict:
    """What this family's expansion needs (llmpipe-mm.json): its tokens, the time layout of audio in video, and the
    WhisperFeatureExtractor's settings at ``vision.audio_sampling_rate`` (from the folder's llmpipe-mm.json, else
    the Whisper keys of its preprocessor_config.json, else :data:`FEATURES`)."""
    import json
    from pathlib import Path

    from llmpipe.data.mm_audio import rate_settings

    def name(ident) -> str:
        return tok.convert_ids_to_tokens(int(ident))

    features = None
    for file, key in (("llmpipe-mm.json", "audio_features"), ("preprocessor_config.json", None)):
        try:
            data = json.loads((Path(source) / file).read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError):
            continue
        data = data.get(key) if key else data
        if isinstance(data, dict) and all(k in data for k in _FE_KEYS[:4]):
            features = data
            break
    features = {**FEATURES, **(features or {})}
    features = {k: features[k] for k in _FE_KEYS}
    if vision is not None and int(vision.audio_sampling_rate) != int(features["sampling_rate"]):
        settings = rate_settings(features, int(vision.audio_sampling_rate))
        if settings is None:
            raise ValueError(f"vision.audio_sampling_rate={vision.audio_sampling_rate}: the feature extractor's window "
                             "would not keep its mel frames at that rate")
        features.update(settings)
    eos = getattr(tok, "vision_eos_token", None) or "<|vision_eos|>"
    return {"vision_start": name(config.vision_start_token_id), "vision_end": eos,
            "video_token": name(config.video_token_index), "audio_token": name(config.audio_token_index),
            "audio_bos": name(config.audio_start_token_id), "audio_eos": name(config.audio_end_token_id),
            "seconds_per_chunk": float(config.seconds_per_chunk),
            "position_id_per_seconds": float(config.position_id_per_seconds), "audio_features": features}


@dataclass
class OmniTokens:
    """How the thinker's media become tokens: its image tokenization (``images``, with its videos attached by
    llmpipe.data.mm_video.attach), its audio (``audio``) and vision.use_audio_in_video."""
    images: Any
    audio: AudioTokens
    use_audio_in_video: bool = False
    column = "audios"   # the rows keep their clips there: the audio collator batches them
    readable = ("images", "videos", "audios")   # the media columns its sft rows may carry (llmpipe.data.loader)

    @property
    def video(self):
        return getattr(self.images, "video", None)

    @property
    def audio_token(self) -> str:
        return self.audio.audio_token

    def batch_inputs(self, clips: list[bytes]) -> dict:
        return self.audio.batch_inputs(clips)

    def other_inputs(self, features: list[dict], batch: dict, tokenizer) -> dict:
        """The images' and videos' inputs of a batch, and ``use_audio_in_video`` where a video carries its audio
        (``<|vision_bos|>`` right before ``<|audio_bos|>``)."""
        from llmpipe.data.mm_media import from_png
        from llmpipe.data.mm_video import batch_inputs

        out: dict = {}
        images = [from_png(b) for f in features for b in (f.get("images") or [])]
        image_id = tokenizer.convert_tokens_to_ids(self.images.image_token)
        out.update(self.images.batch_inputs(images, batch["input_ids"], image_id))
        if any(f.get("videos") for f in features):
            ids = batch["input_ids"]
            videos = {"input_ids": ids}
            batch_inputs(self.images, tokenizer, features, videos)
            out.update({k: v for k, v in videos.items() if k != "input_ids"})
            start = tokenizer.convert_tokens_to_ids(self.images.facts["vision_start"])
            abos = tokenizer.convert_tokens_to_ids(self.audio.audio_bos)
            if bool(((ids[:, :-1] == start) & (ids[:, 1:] == abos)).any()):
                out["use_audio_in_video"] = True
        return out


def load(folder, images, vision=None) -> OmniTokens | None:
    """The OmniTokens of the thinker's processor published in ``folder`` (``images``: its ImageTokens, from
    llmpipe.data.mm_plugins.load), else None."""
    facts = getattr(images, "facts", None) or {}
    if facts.get("plugin") != PLUGIN:
        return None
    from transformers import WhisperFeatureExtractor

    fe = WhisperFeatureExtractor(**facts["audio_features"])
    audio = AudioTokens(fe, int(fe.sampling_rate), audio_token=facts["audio_token"], audio_bos=facts["audio_bos"],
                        audio_eos=facts["audio_eos"])
    return OmniTokens(images, audio, bool(getattr(vision, "use_audio_in_video", False)))


def load_published(folder) -> OmniTokens | None:
    """The OmniTokens of a thinker's processor published in ``folder`` (the collator's: the flag is read from the
    rows), else None."""
    from llmpipe.data import mm_plugins

    try:
        images = mm_plugins.load(folder)
    except ValueError:
        return None
    return load(folder, images) if images is not None else None


def _expand(ex: dict, mm: OmniTokens, root) -> tuple[dict, list, list, list, dict]:
    """(``ex`` with its audio and video placeholders expanded, its clips in token order, its videos' PNG frames,
    their sampled fps, its media token counts); MediaError when a clip or video cannot be used."""
    from llmpipe.data.mm_media import describe, to_png
    from llmpipe.data.mm_video import PLACEHOLDER

    media = ex.get("media") or {}
    audio_refs, video_refs = list(media.get("audios", [])), list(media.get("videos", []))
    if video_refs and mm.video is None:
        raise MediaError("the row has videos and the model reads none")
    clips, videos, rates, texts = [], [], [], {"<audio>": [], "<video>": []}
    counts = {"audio": 0, "video": 0}
    text = "\n".join(str(m.get("content") or "") for m in ex["messages"] if isinstance(m.get("content"), str))
    for kind in _PLACEHOLDERS.findall(text):
        if kind == "<audio>":
            clip, n = mm.audio.prepare(audio_refs.pop(0), root)
            clips.append(clip)
            texts[kind].append(mm.audio.expansion(n))
            counts["audio"] += n
            continue
        ref = video_refs.pop(0)
        clip = mm.video.clip(ref, root)
        layout = mm.video.layout
        if mm.use_audio_in_video:
            try:
                track, n_audio = mm.audio.prepare(ref, root)
            except MediaError as e:
                raise MediaError(f"video {describe(ref)} has no usable audio track for vision.use_audio_in_video=true "
                                 f"({e})") from None
            clips.append(track)
            vtext, n = layout.with_audio(clip, n_audio)
            counts["audio"] += n_audio
        else:
            vtext, n = layout.text(clip)
        texts[kind].append(vtext)
        counts["video"] += n
        videos.append([to_png(f) for f in clip.frames])
        rates.append(clip.sampled_fps)
    messages = expand_placeholders(ex["messages"], "<audio>", texts["<audio>"])
    messages = expand_placeholders(messages, PLACEHOLDER, texts["<video>"])
    rest = {k: v for k, v in media.items() if k == "images"}
    return {**ex, "messages": messages, "media": rest}, clips, videos, rates, counts


def tokenize_examples(examples: list[dict], tokenizer, mm: OmniTokens, proc: dict, rep, root):
    """``datasets.Dataset`` (input_ids, labels, attention_mask, images, videos, video_sampled_fps, audios) of sft
    rows for the thinker; bad rows go to ``rep`` with the reason (an unreadable medium, a video without an audio
    track under use_audio_in_video, media tokens alone over cutoff_len or cut by it)."""
    import datasets

    from llmpipe.data import mm_tokenize
    from llmpipe.data.mm_video import SAMPLED_FPS, _Dropped
    from llmpipe.data.processors import IGNORE_INDEX

    cutoff = proc.get("cutoff_len")
    ready, kept = [], []
    for ex in examples:
        try:
            ex, clips, videos, rates, counts = _expand(ex, mm, root)
        except MediaError as e:
            rep.bad(ex["_row"], str(e))
            continue
        if cutoff and sum(counts.values()) > cutoff:
            rep.bad(ex["_row"], f"its {counts['video']} video and {counts['audio']} audio tokens alone exceed "
                                f"cutoff_len={cutoff} (raise data.cutoff_len, or use shorter media)")
            continue
        ready.append(ex)
        kept.append((ex["_row"], clips, videos, rates, counts))
    dropped = _Dropped(rep)
    ds = mm_tokenize.tokenize_examples(ready, tokenizer, mm.images, proc, dropped, root)
    kept = [k for k in kept if k[0] not in dropped.rows]
    ids_of = {w: tokenizer.convert_tokens_to_ids(t) for w, t in (("video", mm.video.video_token if mm.video else
                                                                    None), ("audio", mm.audio.audio_token)) if t}
    rows = []
    for r, (row, clips, videos, rates, counts) in zip(ds, kept):
        ids = r["input_ids"]
        short = [f"{w} tokens ({sum(t == i for t in ids)} of {counts[w]} kept)" for w, i in ids_of.items()
                 if sum(t == i for t in ids) != counts[w]]
        if short:
            rep.bad(row, f"cutoff_len={cutoff} would cut into its {', '.join(short)}; raise data.cutoff_len")
            continue
        media_ids = set(ids_of.values())
        rows.append({**r, "labels": [IGNORE_INDEX if t in media_ids else lab for t, lab in zip(ids, r["labels"])],
                     "videos": videos, SAMPLED_FPS: rates, "audios": clips})
    features = ds.features.copy()
    features["videos"] = datasets.Sequence(datasets.Sequence(datasets.Value("binary")))
    features[SAMPLED_FPS] = datasets.Sequence(datasets.Value("float64"))
    features["audios"] = datasets.Sequence(datasets.Value("binary"))
    return datasets.Dataset.from_list(rows, features=features)
