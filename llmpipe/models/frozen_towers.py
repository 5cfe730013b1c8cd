"""Frozen encoders run without autograd: a vision (or audio) tower in which nothing trains gets no backward.

Gradient checkpointing needs ``model.enable_input_require_grads()`` (llmpipe.models.trainable): it hooks the input
embeddings of every sub-model so that the checkpointed layers see an input that requires grad. In transformers 5
that includes the encoders of a multimodal model (``model.visual.get_input_embeddings()`` of Qwen2-VL is its patch
embedding, a CLIP/SigLIP tower's too), so with the tower and its merger frozen, every step still records the
tower's autograd graph, recomputes its checkpointed blocks in the backward and back-propagates through them into
nothing: no parameter there takes a gradient. Measured on the multimodal measure's tiny Qwen2-VL (bench/
findings_vlm.md) that was about a fifth of a step's forward and backward.

``run_frozen_towers_without_grad`` wraps the forward of each encoder sub-model (a ``PreTrainedModel`` inside the
model that does not hold the text embeddings): while none of its parameters and none of its tensor inputs requires
grad (no gradient has anywhere to go through it), it runs under ``torch.no_grad()``, exactly the same computation (dropout and its random numbers included), only without
autograd; its output enters the language model as a constant, which is what it is to the loss. The check is made
at every call, so a tower that trains (vision.freeze_vision_tower=false, LoRA on it, a block optimizer that
unfreezes it later) keeps its autograd as before. LLaMA-Factory reaches the same by leaving frozen layers out of
gradient checkpointing and not hooking the input embeddings.
"""
from __future__ import annotations

import functools
import types


def encoders(model) -> list[tuple[str, object]]:
    """(name, module) of the encoder sub-models of ``model`` (or of the model inside a PEFT wrapper): the
    ``PreTrainedModel`` modules below it that do not contain the text input embeddings, outermost only."""
    from transformers import PreTrainedModel

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        text = base.get_input_embeddings()
    except (AttributeError, NotImplementedError):   # transformers' default when a model has no text embeddings:
        return []                                   # then no sub-model can be told apart from the language model
    found: list[tuple[str, object]] = []
    for name, module in base.named_modules():
        if module is base or not isinstance(module, PreTrainedModel):
            continue
        if any(name.startswith(outer + ".") for outer, _ in found):
            continue
        if not any(m is text for m in module.modules()):
            found.append((name, module))
    return found


def run_frozen_towers_without_grad(model) -> list[str]:
    """Wrap the forward of every encoder sub-model of ``model`` (see the module docstring); idempotent. The names of
    the encoders that are frozen now (the ones the train log names)."""
    import torch

    frozen = []
    for name, module in encoders(model):
        if getattr(module, "llmpipe_forward_with_grad", None) is None:
            # kept on the module (a bound method): a deep copy of the model rebinds it to the copy
            module.llmpipe_forward_with_grad = module.forward

            @functools.wraps(type(module).forward)
            def forward(self, *args, **kwargs):
                if torch.is_grad_enabled() and not any(p.requires_grad for p in self.parameters()) and not any(
                        isinstance(a, torch.Tensor) and a.requires_grad for a in (*args, *kwargs.values())):
                    with torch.no_grad():
                        return self.llmpipe_forward_with_grad(*args, **kwargs)
                return self.llmpipe_forward_with_grad(*args, **kwargs)

            module.forward = types.MethodType(forward, module)
        if not any(p.requires_grad for p in module.parameters()):
            frozen.append(name)
    return frozen
