"""fp8 training (``train.fp8``; LLaMA-Factory's fp8, fp8_backend, fp8_enable_fsdp_float8_all_gather) through
accelerate's fp8 recipe: the Trainer's Accelerator gets ``mixed_precision="fp8"`` and the backend's recipe
(torchao's AORecipeKwargs or Transformer Engine's TERecipeKwargs) among its kwargs handlers. GPU only (compute
capability 8.9 or newer); pre-flight (llmpipe.config.rules.fp8) refuses it elsewhere.
"""
from __future__ import annotations

from typing import Any

from llmpipe.config.rules.fp8 import resolve_backend


def recipe_kwargs(train: Any, backend: str) -> dict[str, Any]:
    """The recipe's arguments (what the accelerator is given; shown by the flag-effect probe)."""
    if backend == "torchao":
        return {"recipe": "AORecipeKwargs", "enable_fsdp_float8_all_gather": bool(train.fp8_enable_fsdp_float8_all_gather)}
    return {"recipe": "TERecipeKwargs", "fp8_format": "HYBRID", "amax_history_len": 16, "amax_compute_algo": "max"}


def _recipe(train: Any, backend: str):
    from accelerate.utils import AORecipeKwargs, TERecipeKwargs

    kw = dict(recipe_kwargs(train, backend))
    cls = AORecipeKwargs if kw.pop("recipe") == "AORecipeKwargs" else TERecipeKwargs
    if cls is AORecipeKwargs and not kw["enable_fsdp_float8_all_gather"]:
        kw.pop("enable_fsdp_float8_all_gather")
    return cls(**kw)


def fp8_trainer_class(base: type, cfg: Any, log=lambda _m: None) -> type:
    """``base``, or a subclass whose Accelerator trains in fp8 (``train.fp8=true``)."""
    if not cfg.train.fp8:
        return base
    backend = resolve_backend(cfg.train.fp8_backend)
    if backend is None:   # pre-flight refuses this; a changed environment between check and run lands here
        raise RuntimeError(f"train.fp8_backend={cfg.train.fp8_backend}: no fp8 backend is installed (torchao or"
                           " transformer_engine)")
    recipe = _recipe(cfg.train, backend)
    log(f"fp8 mixed precision through accelerate ({backend})")

    class Fp8Trainer(base):  # type: ignore[misc, valid-type]
        def _build_accelerator_args(self, **kwargs):
            args = super()._build_accelerator_args(**kwargs)
            args["mixed_precision"] = "fp8"
            args["kwargs_handlers"] = [*args.get("kwargs_handlers", []), recipe]
            return args

    Fp8Trainer.__name__ = Fp8Trainer.__qualname__ = f"Fp8{base.__name__}"
    return Fp8Trainer

