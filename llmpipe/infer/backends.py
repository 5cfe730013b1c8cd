"""Opening the generation backend named by ``infer.backend``: transformers (in-process) or vLLM. The engine
types they share live in llmpipe.infer.engine, which imports neither backend."""
from __future__ import annotations

from typing import Any

from llmpipe.infer.engine import InferenceError, Prompter, load_prompter


def open_backend(obj: Any, ref, prompter: Prompter | None = None):
    """The backend named by ``infer.backend`` serving model ``ref`` (a :class:`~llmpipe.infer.model_ref.ModelRef`)."""
    prompter = prompter or load_prompter(ref.tokenizer, obj)
    backend = obj.infer.backend
    if backend == "huggingface":
        from llmpipe.infer.hf_backend import HFBackend

        return HFBackend(ref, obj, prompter)
    if backend == "vllm":
        from llmpipe.infer.vllm_backend import VllmBackend

        return VllmBackend(ref, obj, prompter)
    raise InferenceError(f"infer.backend={backend}: llmpipe drives the huggingface and vllm engines only; for SGLang "
                         "export the model (export.dir=...) and start `python -m sglang.launch_server --model-path "
                         "<export dir>`, or use infer.backend=vllm")
