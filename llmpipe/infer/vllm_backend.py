"""The vLLM backend (CUDA GPUs only; pre-flight refuses it elsewhere): one ``AsyncLLMEngine`` running in a
background asyncio loop, fed token ids rendered by llmpipe. Batch prediction submits every prompt at once
(continuous batching); chat and serve stream from the same engine. A LoRA adapter is served through
``enable_lora`` + a ``LoRARequest`` with ``max_lora_rank = infer.vllm_max_lora_rank``.

Engine settings: ``max_model_len = infer.vllm_maxlen``, ``gpu_memory_utilization = infer.vllm_gpu_util``,
``enforce_eager = infer.vllm_enforce_eager``, ``dtype = infer.dtype``, ``tensor_parallel_size`` = the visible
GPUs; ``infer.vllm_config`` (a JSON object) is merged last. A vision-language model's prompts carry their
images (llmpipe.infer.mm_request.ImagePrompt), passed as ``multi_modal_data``.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import threading
from typing import Any

from llmpipe.infer.engine import Completion, InferenceError, Prompter, Stream
from llmpipe.infer.generation import GenParams, vllm_kwargs
from llmpipe.infer.mm_request import images_of

_IDS = itertools.count()


def engine_args(ref, obj: Any) -> dict[str, Any]:
    """The ``AsyncEngineArgs`` keyword arguments for model ``ref`` (no vLLM import: unit-testable)."""
    inf = obj.infer
    if len(ref.adapters) > 1:
        raise InferenceError("vLLM serves one adapter; merge the adapters first (export.dir=...) or use "
                             "infer.backend=huggingface")
    try:
        import torch

        gpus = max(1, torch.cuda.device_count())
    except Exception:  # pragma: no cover - torch is always there in practice
        gpus = 1
    kw: dict[str, Any] = dict(
        model=ref.model, tokenizer=ref.tokenizer, dtype=inf.dtype, max_model_len=inf.vllm_maxlen,
        gpu_memory_utilization=inf.vllm_gpu_util, enforce_eager=inf.vllm_enforce_eager,
        trust_remote_code=obj.model.trust_remote_code, tensor_parallel_size=gpus, disable_log_stats=True,
        seed=obj.train.seed,
    )
    if obj.model.model_revision and obj.model.model_revision != "main":
        kw["revision"] = obj.model.model_revision
    if ref.adapters:
        kw.update(enable_lora=True, max_lora_rank=inf.vllm_max_lora_rank, max_loras=1)
    if inf.vllm_config:
        kw.update(json.loads(inf.vllm_config) if isinstance(inf.vllm_config, str) else dict(inf.vllm_config))
    return kw


class VllmBackend:
    name = "vllm"

    def __init__(self, ref, obj: Any, prompter: Prompter):
        try:
            from vllm import AsyncEngineArgs, AsyncLLMEngine, SamplingParams, TokensPrompt
            from vllm.lora.request import LoRARequest
        except ImportError as e:
            raise InferenceError(f"infer.backend=vllm but vLLM cannot be imported ({e}); pip install vllm on a "
                                 "machine with a CUDA GPU, or use infer.backend=huggingface") from None
        self._SamplingParams, self._TokensPrompt = SamplingParams, TokensPrompt
        self.prompter = prompter
        self.engine_limit = int(obj.infer.vllm_maxlen)
        self.lora = LoRARequest("llmpipe-adapter", 1, ref.adapters[0]) if ref.adapters else None
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="vllm-loop", daemon=True)
        self._thread.start()
        args = AsyncEngineArgs(**engine_args(ref, obj))

        async def make():   # created inside the loop, so its output handler runs there
            return AsyncLLMEngine.from_engine_args(args)

        self.engine = asyncio.run_coroutine_threadsafe(make(), self.loop).result()

    def _params(self, prompt: list[int], params: GenParams):
        if params.num_beams > 1:
            raise InferenceError("vLLM does no beam search through llmpipe; set generate.num_beams=1 "
                                 "(and data.eval_num_beams=null), or use infer.backend=huggingface")
        params = self.prompter.with_stops(params)   # the template's stop words of several tokens, as stop strings
        return self._SamplingParams(**vllm_kwargs(params, len(prompt), eos_ids=self.prompter.eos_ids,
                                                  engine_limit=self.engine_limit))

    def _prompt(self, prompt: list[int]):
        """vLLM's prompt: the token ids, and a vision-language model's images (already counted into the ids by
        llmpipe.infer.mm_request, which vLLM finds expanded and does not expand again) as multi_modal_data."""
        images = images_of(prompt)
        if images:
            return self._TokensPrompt(prompt_token_ids=list(prompt), multi_modal_data={"image": images})
        return self._TokensPrompt(prompt_token_ids=list(prompt))

    async def _run(self, prompt: list[int], sp, on_text=None) -> Completion:
        rid = f"llmpipe-{next(_IDS)}"
        sent, last = "", None
        async for out in self.engine.generate(self._prompt(prompt), sp, rid, lora_request=self.lora):
            last = out
            text = out.outputs[0].text
            if on_text is not None and len(text) > len(sent):
                on_text(text[len(sent):])
                sent = text
        if last is None:
            raise InferenceError("vLLM returned no output")
        choice = last.outputs[0]
        reason = "length" if choice.finish_reason == "length" else "stop"
        return Completion(choice.text, reason, len(prompt), len(choice.token_ids))

    def generate(self, prompts: list[list[int]], params: GenParams, batch_size: int = 0) -> list[Completion]:
        sps = [self._params(p, params) for p in prompts]   # errors before anything is submitted

        async def every():
            return await asyncio.gather(*(self._run(p, sp) for p, sp in zip(prompts, sps)))

        return list(asyncio.run_coroutine_threadsafe(every(), self.loop).result())

    def stream(self, prompt: list[int], params: GenParams) -> Stream:
        sp = self._params(prompt, params)
        holder: dict = {}
        stream = Stream(on_close=lambda: holder["future"].cancel() if "future" in holder else None)

        async def work():
            try:
                stream.finish(await self._run(prompt, sp, on_text=stream.push))
            except asyncio.CancelledError:   # the consumer went away: the engine aborts the request
                stream.fail(InferenceError("generation cancelled"))
                raise
            except Exception as e:
                stream.fail(InferenceError(f"vLLM generation failed: {e}"))

        holder["future"] = asyncio.run_coroutine_threadsafe(work(), self.loop)
        return stream

    def close(self) -> None:
        try:
            shutdown = getattr(self.engine, "shutdown", None)   # vLLM's V1 engine; older ones stop with the loop
            if shutdown is not None:
                shutdown()
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
