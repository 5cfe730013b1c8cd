"""Memory-efficient optimizers chosen through their own families, replacing train.optim:

- GaLore (galore.*): Adam on low-rank projections of the gradients of the targeted linear weights; with
  galore.layerwise, one optimizer per parameter stepped from a post-accumulate-grad hook during backward (the
  Trainer's optimizer and scheduler become transformers' layer-wise dummies, the real schedulers step per
  parameter);
- APOLLO (apollo.*): apollo-torch's AdamW whose moments live in a random (or SVD) rank-apollo.rank projection of
  the targeted weights' gradients and only scale the raw gradient, channel- or tensor-wise; layer-wise like GaLore;
- Muon (muon.use_muon): torch.optim.Muon (momentum orthogonalised by Newton-Schulz) on the 2-D hidden weights,
  AdamW on the embeddings, the output head, norms and biases, joined as one optimizer (training/muon.py);
- BAdam (badam.use_badam): block-coordinate Adam, layer-wise (one decoder block at a time, switched every
  badam.switch_interval steps in badam.switch_mode order) or ratio-wise (a badam.update_ratio mask of every
  weight, adjacent or scattered);
- Adam-mini (badam.use_adam_mini): one second-moment value per parameter block;
- LoRA+ (lora.loraplus_lr_ratio): the LoRA B matrices learn loraplus_lr_ratio times faster than A.

:func:`trainer_class` turns a Trainer class (transformers or TRL) into one whose optimizer comes from
:func:`build_optimizer` when one of these is configured, created when the Trainer would create its own (after
the model is placed on its device).
"""
from __future__ import annotations

import sys
from typing import Any

NO_DECAY = [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]
HEADS = ("lm_head", "score", "v_head", "embed_out", "output")


def _adam_kwargs(args) -> dict[str, Any]:
    return {"lr": args.learning_rate, "betas": (args.adam_beta1, args.adam_beta2), "eps": args.adam_epsilon}


def _decay_split(model) -> tuple[list, list]:
    """(trainable parameters with weight decay, trainable parameters without: biases and norms)."""
    import torch
    from transformers.trainer_pt_utils import get_parameter_names

    decay = set(get_parameter_names(model, [torch.nn.LayerNorm], NO_DECAY))
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [p for n, p in named if n in decay], [p for n, p in named if n not in decay]


def galore_targets(model, wanted: list[str], key: str = "galore.target") -> list:
    """Trainable weights of the linear layers galore.target (or apollo.target) names ('all': every linear layer
    but the head)."""
    import torch

    params = []
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if not isinstance(module, torch.nn.Linear) or not module.weight.requires_grad:
            continue
        if ("all" in wanted and leaf not in HEADS) or leaf in wanted or name in wanted:
            params.append(module.weight)
    if not params:
        raise ValueError(f"{key}={','.join(wanted)}: no trainable linear layer matches")
    return params


def _projected(model, args, opt_cls, targets: list, projection: dict, layerwise: bool, **kw):
    """``opt_cls`` (GaLore's or APOLLO's AdamW) over three groups: the ``targets`` with the ``projection`` keys,
    the other weights with weight decay, biases and norms without. ``layerwise``: one optimizer per parameter,
    stepped from a post-accumulate-grad hook during backward, behind transformers' layer-wise dummy."""
    from transformers.trainer_pt_utils import LayerWiseDummyOptimizer

    ids = {id(p) for p in targets}
    decay, no_decay = _decay_split(model)
    groups = [{"params": [p for p in decay if id(p) not in ids], "weight_decay": args.weight_decay},
              {"params": no_decay, "weight_decay": 0.0},
              {"params": targets, "weight_decay": args.weight_decay, **projection}]
    kw = {**_adam_kwargs(args), "no_deprecation_warning": True, **kw}
    if not layerwise:
        return opt_cls([grp for grp in groups if grp["params"]], **kw)
    per_param = {}
    for grp in groups:
        for p in grp["params"]:
            per_param[p] = opt_cls([{**grp, "params": [p]}], **kw)

    def step_now(param):   # runs as soon as this parameter's gradient is complete
        if param.grad is not None:
            per_param[param].step()
            per_param[param].zero_grad()

    for p in per_param:
        p.register_post_accumulate_grad_hook(step_now)
    return LayerWiseDummyOptimizer(optimizer_dict=per_param, lr=args.learning_rate)


def _galore(model, cfg: Any, args):
    import torch
    from galore_torch import GaLoreAdamW
    from galore_torch.galore_projector import GaLoreProjector

    torch.serialization.add_safe_globals([GaLoreProjector])   # its projectors are optimizer state: resumable

    g = cfg.galore
    projection = {"rank": g.rank, "update_proj_gap": g.update_interval, "scale": g.scale, "proj_type": g.proj_type}
    return _projected(model, args, GaLoreAdamW, galore_targets(model, g.target), projection, g.layerwise)


def _apollo(model, cfg: Any, args):
    import torch
    from apollo_torch import APOLLOAdamW
    from apollo_torch.random_projector import GradientProjector
    from apollo_torch.svd_projector import GaLoreProjector

    torch.serialization.add_safe_globals([GradientProjector, GaLoreProjector])   # projectors are optimizer state

    a = cfg.apollo
    projection = {"rank": a.rank, "proj": a.proj, "proj_type": a.proj_type, "update_proj_gap": a.update_interval,
                  "scale": a.scale, "scale_type": a.scale_type}
    return _projected(model, args, APOLLOAdamW, galore_targets(model, a.target, "apollo.target"), projection,
                      a.layerwise, scale_front=a.scale_front)


def _badam(model, cfg: Any, args):
    import torch
    from badam import BlockOptimizer, BlockOptimizerRatio

    b = cfg.badam
    decay, no_decay = _decay_split(model)
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if b.mode == "ratio":   # BAdam freezes the embedding and the LM head by name; tied heads have no name of their own
        has = {part: any(part in n for n, _ in named) for part in ("embed", "lm_head")}
        return BlockOptimizerRatio(param_groups=groups, named_parameters_list=named, update_ratio=b.update_ratio,
                                   mask_mode=b.mask_mode, verbose=b.verbose, include_embedding=not has["embed"],
                                   include_lm_head=not has["lm_head"],
                                   switch_every=b.switch_interval if b.switch_interval > 0 else sys.maxsize,
                                   **_adam_kwargs(args))

    class QuietBlockOptimizer(BlockOptimizer):   # BAdam 1.4 prints every block switch whatever its verbosity
        def switch_trainable_params(self, verbose=None):
            return super().switch_trainable_params(verbose=self.verbose if verbose is None else verbose)

    base = torch.optim.AdamW(groups, **_adam_kwargs(args))
    return QuietBlockOptimizer(base_optimizer=base, named_parameters_list=named, block_prefix_list=None,
                               switch_block_every=b.switch_interval if b.switch_interval > 0 else sys.maxsize,
                               start_block=b.start_block, switch_mode=b.switch_mode, verbose=b.verbose)


def _adam_mini(model, args):
    from adam_mini import Adam_mini

    c = model.config
    heads = getattr(c, "num_attention_heads", 1)
    return Adam_mini(named_parameters=[(n, p) for n, p in model.named_parameters() if p.requires_grad],
                     weight_decay=args.weight_decay, model_sharding=False, dim=getattr(c, "hidden_size", 1),
                     n_heads=heads, n_kv_heads=getattr(c, "num_key_value_heads", None) or heads, verbose=False,
                     **_adam_kwargs(args))


def muon_split(model) -> tuple[list, list]:
    """(Muon's parameters: the trainable 2-D weights but embeddings and output heads; the rest, for AdamW)."""
    muon, rest = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            leaf = name.removesuffix(".weight").rsplit(".", 1)[-1]
            hidden = p.ndim == 2 and "embed" not in name and leaf not in HEADS and "lm_head" not in name
            (muon if hidden else rest).append(p)
    return muon, rest


def _muon(model, cfg: Any, args):
    import torch

    from llmpipe.training.muon import MuonWithAdamW

    m = cfg.muon
    muon, rest = muon_split(model)
    ids = {id(p) for p in rest}
    decay, no_decay = _decay_split(model)
    adamw = [{"params": [p for p in decay if id(p) in ids], "weight_decay": args.weight_decay},
             {"params": [p for p in no_decay if id(p) in ids], "weight_decay": 0.0}]
    parts = [torch.optim.Muon(muon, lr=args.learning_rate, weight_decay=args.weight_decay, momentum=m.momentum,
                              nesterov=m.nesterov, ns_steps=m.ns_steps, adjust_lr_fn=m.adjust_lr)] if muon else []
    if any(g["params"] for g in adamw):
        parts.append(torch.optim.AdamW([g for g in adamw if g["params"]], **_adam_kwargs(args)))
    return MuonWithAdamW(parts)


def _loraplus(model, cfg: Any, args):
    import torch
    from peft.optimizers import create_loraplus_optimizer

    kw = _adam_kwargs(args)
    return create_loraplus_optimizer(model=model, optimizer_cls=torch.optim.AdamW, lr=kw.pop("lr"),
                                     loraplus_lr_ratio=cfg.lora.loraplus_lr_ratio,
                                     loraplus_lr_embedding=cfg.lora.loraplus_lr_embedding,
                                     weight_decay=args.weight_decay, **kw)


def build_optimizer(model, cfg: Any, training_args):
    """The configured special optimizer for ``model``'s trainable parameters, or None (use train.optim)."""
    if cfg.galore.use_galore:
        return _galore(model, cfg, training_args)
    if cfg.apollo.use_apollo:
        return _apollo(model, cfg, training_args)
    if cfg.muon.use_muon:
        return _muon(model, cfg, training_args)
    if cfg.badam.use_badam:
        return _badam(model, cfg, training_args)
    if cfg.badam.use_adam_mini:
        return _adam_mini(model, training_args)
    if cfg.train.finetuning_type == "lora" and cfg.lora.loraplus_lr_ratio:
        return _loraplus(model, cfg, training_args)
    return None


def describe(cfg: Any) -> str | None:
    if cfg.galore.use_galore:
        g = cfg.galore
        return f"GaLore rank {g.rank}{' layer-wise' if g.layerwise else ''} ({','.join(g.target)})"
    if cfg.apollo.use_apollo:
        a = cfg.apollo
        return f"APOLLO rank {a.rank} {a.proj} {a.scale_type}-wise{' layer-wise' if a.layerwise else ''} ({','.join(a.target)})"
    if cfg.muon.use_muon:
        return f"Muon (2-D hidden weights, {cfg.muon.ns_steps} Newton-Schulz steps) + AdamW (the rest)"
    if cfg.badam.use_badam:
        return f"BAdam {cfg.badam.mode}-wise"
    if cfg.badam.use_adam_mini:
        return "Adam-mini"
    if cfg.train.finetuning_type == "lora" and cfg.lora.loraplus_lr_ratio:
        return f"LoRA+ (lr_B = {cfg.lora.loraplus_lr_ratio:g} x lr_A)"
    return None


def trainer_class(base: type, cfg: Any, log=None) -> type:
    """``base`` with create_optimizer taking the optimizer from :func:`build_optimizer` when one is configured
    (announced through ``log``)."""

    class MethodsTrainer(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if cfg.badam.use_badam and cfg.badam.mode == "ratio":
                # ratio-wise BAdam makes the gradients sparse, which torch's foreach clip_grad_norm_ cannot handle
                from types import MethodType

                from badam import clip_grad_norm_old_version

                self.accelerator.clip_grad_norm_ = MethodType(clip_grad_norm_old_version, self.accelerator)

        def create_optimizer(self, model=None):
            if self.optimizer is None:
                optimizer = build_optimizer(self.model if model is None else model, cfg, self.args)
                if optimizer is not None:
                    if log is not None:
                        log(f"optimizer: {describe(cfg)}")
                    self.optimizer = optimizer
                    return optimizer
            return super().create_optimizer(model)

    MethodsTrainer.__name__ = MethodsTrainer.__qualname__ = base.__name__
    return MethodsTrainer
