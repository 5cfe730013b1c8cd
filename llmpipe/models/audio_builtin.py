"""A tiny Qwen2-Audio instance built offline from transformers' config classes (``Qwen2AudioForConditionalGeneration``).

Layout: an audio encoder (``audio_tower``: Whisper-like, 2 layers, width 64, 128 mel bins, a 2 s window =
200 mel frames), its projector (``multi_modal_projector``: one linear layer) and a Llama language model
(``language_model`` + ``lm_head``) of ``builtin:tiny``'s sizes with its tokenizer plus the three Qwen2-Audio tokens
``<|audio_bos|>``, ``<|AUDIO|>``, ``<|audio_eos|>``; randomly initialised with a fixed seed. Its processor is
transformers' ``Qwen2AudioProcessor`` (a WhisperFeatureExtractor at 16 kHz plus the tokenizer), which builds
without torchvision, so the folder reloads with ``AutoProcessor``.
"""
from __future__ import annotations

from pathlib import Path

from llmpipe.data.mm_audio import AUDIO_TOKENS

SPEC = {"audio": {"num_mel_bins": 128, "encoder_layers": 2, "encoder_attention_heads": 4, "encoder_ffn_dim": 128,
                  "d_model": 64, "max_source_positions": 100},
        "text": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                 "num_key_value_heads": 2},
        "window_s": 2, "sampling_rate": 16000, "seed": 0}
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def feature_extractor(spec: dict = SPEC):
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(feature_size=spec["audio"]["num_mel_bins"], sampling_rate=spec["sampling_rate"],
                                   chunk_length=spec["window_s"], hop_length=160)


def tokenizer():
    """builtin:tiny's tokenizer with the Qwen2-Audio tokens."""
    from llmpipe.models.tiny import build_tokenizer

    tok = build_tokenizer("builtin:tiny")
    tok.add_special_tokens({"additional_special_tokens": list(AUDIO_TOKENS)})
    return tok


def build(out_dir: str | Path, spec: dict = SPEC):
    """Write the tiny Qwen2-Audio model, tokenizer and processor into ``out_dir``; returns (model, processor)."""
    import torch
    from transformers import (
        GenerationConfig,
        Qwen2AudioConfig,
        Qwen2AudioForConditionalGeneration,
        Qwen2AudioProcessor,
    )

    tok = tokenizer()
    text = dict(spec["text"], model_type="llama", vocab_size=len(tok), bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, max_position_embeddings=512)
    cfg = Qwen2AudioConfig(audio_config=dict(spec["audio"], model_type="qwen2_audio_encoder"), text_config=text,
                           audio_token_index=tok.convert_tokens_to_ids("<|AUDIO|>"), dtype="float32")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec["seed"])
        model = Qwen2AudioForConditionalGeneration(cfg).eval()
    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                               pad_token_id=tok.pad_token_id)
    proc = Qwen2AudioProcessor(feature_extractor=feature_extractor(spec), tokenizer=tok, chat_template=CHAT_TEMPLATE)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    proc.save_pretrained(out)
    return model, proc
