"""Inference: generation settings, the Hugging Face and vLLM backends, held-out prediction and its metrics,
the interactive chat (``python -m llmpipe.chat``) and the OpenAI-compatible server (``python -m
llmpipe.serve``). See docs/inference.md. Modules import torch only inside the functions that need it."""
