"""The Hugging Face backend: ``model.generate`` with left-padded batches, and token streaming through a
TextIteratorStreamer in a generation thread. Adapters are applied with PEFT (several are merged in order);
``infer.dtype`` picks the weights' dtype, ``infer.use_kv_cache`` the KV cache. A vision-language model's
prompts (llmpipe.infer.mm_request.ImagePrompt) bring their images: pixel values are computed per batch."""
from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

from llmpipe.infer.engine import Completion, InferenceError, Prompter, StopScanner, Stream, cut_at_stop
from llmpipe.infer.generation import GenParams, hf_generation_config
from llmpipe.infer.mm_request import images_of, text_only, vision_for

DTYPES = {"auto": "auto", "float16": "float16", "bfloat16": "bfloat16", "float32": "float32"}


def load_model(ref, obj: Any, log=print):
    """The model of ``ref`` in eval mode, on the GPU when there is one.

    * a finished model folder (merge/export/full fine-tuning): loaded as it is;
    * an adapter trained by the run: on the run's base, loaded as training loaded it (the adapters of
      model.adapter_name_or_path that training merged are merged again), then the adapter merged;
    * the configured base model: every adapter of model.adapter_name_or_path merged in order.

    With ``quantization.bit`` the base is quantized while loading, as training quantizes it (bitsandbytes, HQQ,
    EETQ; ``quantization.device_map`` and ``model.offload_folder`` place it), and the last adapter stays a
    separate LoRA on the quantized weights: merging into quantized weights would round it away.
    """
    import torch
    from peft import PeftModel

    from llmpipe.models.adapters import load_adapter, merge_adapters
    from llmpipe.models.loading import ModelSourceError, load_causal_lm
    from llmpipe.models.quantization import is_quantized

    dtype = DTYPES[obj.infer.dtype]
    dtype = getattr(torch, dtype) if dtype != "auto" else "auto"
    quantize = obj.quantization.bit is not None
    if quantize and dtype == "auto":
        dtype = torch.float32 if not torch.cuda.is_available() else torch.bfloat16   # the quantizers' compute dtype
    trained_adapter = ref.trained and bool(ref.adapters)
    view = obj if trained_adapter else replace(obj, model=replace(
        obj.model, adapter_name_or_path=[], train_from_scratch=obj.model.train_from_scratch and not ref.trained))
    try:
        model = load_causal_lm(ref.model, view, dtype=dtype, quantize=quantize, log=log)
    except (OSError, ValueError) as e:
        raise ModelSourceError(f"{ref.model} could not be loaded as a causal language model: "
                               f"{str(e).splitlines()[0]}") from None
    adapters = list(ref.adapters)
    keep = adapters.pop() if quantize and adapters else None
    if trained_adapter:
        for adapter in adapters:
            model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
        if keep:
            model = PeftModel.from_pretrained(model, keep)
    else:
        model = merge_adapters(model, adapters, obj, log=log)
        if keep:
            model = load_adapter(model, keep, obj, trainable=False)
    if keep:
        log(f"adapter {keep} applied on the quantized weights (not merged)")
    if torch.cuda.is_available() and not is_quantized(model.get_base_model() if keep else model):
        model = model.to("cuda")
    model.eval()
    return model


class HFBackend:
    name = "huggingface"

    def __init__(self, ref, obj: Any, prompter: Prompter):
        self.ref, self.prompter, self.tok = ref, prompter, prompter.tokenizer
        self.model = load_model(ref, obj)
        self.engine_limit = None
        self.vision = vision_for(ref, obj, self.tok)   # a vision-language model's pixel inputs, else None

    def _images(self, prompts: list[list[int]], ids) -> dict:
        """pixel_values, image_grid_thw and mm_token_type_ids of the prompts' images (llmpipe.infer.mm_request)."""
        images = [img for p in prompts for img in images_of(p)]
        if not images:
            return {}
        if self.vision is None:
            raise InferenceError(text_only(self.ref))
        return self.vision.inputs(images, ids, self.model.device)

    # ------------------------------------------------------------------------------------------- batch
    def generate(self, prompts: list[list[int]], params: GenParams, batch_size: int = 8) -> list[Completion]:
        params = self.prompter.with_stops(params)
        out: list[Completion] = []
        for i in range(0, len(prompts), max(1, batch_size)):
            out += self._batch(prompts[i:i + batch_size], params)
        return out

    def _batch(self, prompts: list[list[int]], params: GenParams) -> list[Completion]:
        import torch

        width = max(len(p) for p in prompts)
        pad = self.tok.pad_token_id
        ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for j, p in enumerate(prompts):   # left padding: every prompt ends where generation starts
            ids[j, width - len(p):], mask[j, width - len(p):] = torch.tensor(p), 1
        config = hf_generation_config(params, width, eos_ids=self.prompter.eos_ids, pad_id=pad)
        with torch.no_grad():
            seqs = self.model.generate(input_ids=ids.to(self.model.device), attention_mask=mask.to(self.model.device),
                                       generation_config=config, **self._extra(params), **self._images(prompts, ids))
        return [self._completion(seqs[j, width:].tolist(), len(p), params) for j, p in enumerate(prompts)]

    def _extra(self, params: GenParams) -> dict:
        return {"tokenizer": self.tok} if params.stop else {}

    def _completion(self, new: list[int], prompt_len: int, params: GenParams) -> Completion:
        eos = set(self.prompter.eos_ids)
        end = next((k for k, t in enumerate(new) if t in eos), None)
        tokens = new if end is None else new[:end]
        text = self.tok.decode(tokens, skip_special_tokens=params.skip_special_tokens)
        text, stopped = cut_at_stop(text, params.stop)
        reason = "stop" if end is not None or stopped else "length"
        return Completion(text, reason, prompt_len, len(tokens) + (1 if end is not None else 0))

    # ----------------------------------------------------------------------------------------- stream
    def stream(self, prompt: list[int], params: GenParams) -> Stream:
        params = self.prompter.with_stops(params)
        if params.num_beams > 1:   # transformers' streamers cannot follow beam search: one piece at the end
            stream = Stream()
            threading.Thread(target=self._whole, args=(stream, prompt, params), daemon=True).start()
            return stream
        return self._stream(prompt, params)

    def _whole(self, stream: Stream, prompt: list[int], params: GenParams) -> None:
        try:
            done = self._batch([prompt], params)[0]
        except BaseException as e:  # delivered to the consumer
            stream.fail(e)
            return
        stream.push(done.text)
        stream.finish(done)

    def _stream(self, prompt: list[int], params: GenParams) -> Stream:
        import torch
        from transformers import TextIteratorStreamer

        eos = set(self.prompter.eos_ids)

        class _Streamer(TextIteratorStreamer):   # the end-of-turn token is not text, even without skipping
            def put(self, value):
                if self.skip_prompt and self.next_tokens_are_prompt:
                    return super().put(value)
                kept = [t for t in value.reshape(-1).tolist() if t not in eos]
                if kept:
                    super().put(torch.tensor(kept, dtype=value.dtype))

        cancel = threading.Event()
        streamer = _Streamer(self.tok, skip_prompt=True, skip_special_tokens=params.skip_special_tokens)
        stream = Stream(on_close=cancel.set)
        config = hf_generation_config(params, len(prompt), eos_ids=self.prompter.eos_ids, pad_id=self.tok.pad_token_id)
        result: dict = {}

        from transformers import StoppingCriteria, StoppingCriteriaList

        class _Cancel(StoppingCriteria):   # the consumer went away, or a stop string was reached
            def __call__(self, input_ids, scores, **kw):
                return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool, device=input_ids.device)

        def work():
            try:
                ids = torch.tensor([prompt], device=self.model.device)
                with torch.no_grad():
                    result["seqs"] = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                                         generation_config=config, streamer=streamer,
                                                         stopping_criteria=StoppingCriteriaList([_Cancel()]),
                                                         **self._extra(params), **self._images([prompt], ids))
            except BaseException as e:
                result["error"] = e
                streamer.end()

        def pump():
            try:
                scanner = StopScanner(params.stop)
                for piece in streamer:
                    stream.push(scanner.feed(piece))
                    if scanner.stopped:
                        cancel.set()
                stream.push(scanner.flush())
                thread.join()
                if "error" in result:
                    raise result["error"]
                done = self._completion(result["seqs"][0, len(prompt):].tolist(), len(prompt), params)
                if scanner.stopped:
                    done.finish_reason = "stop"
                stream.finish(done)
            except BaseException as e:   # the consumer must always hear the end
                stream.fail(InferenceError(f"generation failed: {e}"))

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        threading.Thread(target=pump, daemon=True).start()
        return stream

    def close(self) -> None:
        pass
