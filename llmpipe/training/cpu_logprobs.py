"""TRL's fused LM head on the CPU, in fewer passes over the logits.

TRL's DPO, KTO (and GRPO/RLOO) trainers score completions with a fused LM head
(``trl.trainer.utils.add_fused_lm_head``), whose kernel ``trl.kernels.ChunkedLogProbFunction`` folds each
``[tokens, vocabulary]`` tile of logits into running log-sum-exp statistics: a Triton kernel on GPUs, and on
devices without Triton the same fold written as torch operations, an online softmax that rescales its statistics
tile by tile and builds the optional outputs (entropy, mean logit, whether the target is the top-1 token) in a
dozen full passes over the tile, forward and again in the backward's recompute. On the bench model (vocabulary
4,096) that fold was 16 % of a DPO training step and 27 % of the reference stage's scoring, several times the
projection it folds.

:class:`CpuLogProbFunction` computes the same outputs and gradients from the same inputs: per chunk of tokens the
whole vocabulary at once (at most :data:`CHUNK_ELEMENTS` logits per chunk, so memory stays bounded for large
vocabularies), the maximum, one exponential and its sums, the target's logit by index, the top-1 test as an
``argmax``; the backward recomputes the chunk and writes the target column by index instead of building a one-hot
tile. The arithmetic is TRL's, written in the same order, so with one vocabulary tile (vocabulary up to TRL's
``chunk_size``, 32,768) and up to 4,096 tokens the log-probs, every other output and the hidden states' gradient
are bit-identical to TRL's; the head weight's own gradient (not trained under LoRA) too while the tokens fit one
chunk (2^25 / vocabulary of them), else it is summed over chunks in another order. With a larger vocabulary the
sums run in one piece instead of TRL's online rescaling: equal within float error. Measured on the bench model's head (320 tokens x 4,096 vocabulary x 256 hidden, TRL's DPO
outputs): forward 20-27 -> 9.5 ms, forward and backward 45-53 -> 22-27 ms; a bench DPO run's train stage 7.1 ->
6.2-6.4 s and its reference scoring 2.6 -> 2.1 s (bench/findings.md).

:func:`use_on_cpu` makes TRL's fused head call it for CPU tensors; other devices keep TRL's kernel (Triton on
GPUs; fixed tile shapes for compiled backends without Triton).
"""
from __future__ import annotations

import torch

# logits per chunk of tokens (float32: 128 MiB); a chunk holds at least one token
CHUNK_ELEMENTS = 1 << 25
OPTIONAL = ("entropy", "log_sum_sq_probs", "mean_logits", "is_top1")


def _logits(hidden, weight, bias, compute_dtype, logit_scale: float, softcap: float | None, inv_t: float):
    """The transformed float32 logits of a chunk (TRL's ``_torch_transform`` order: scale, soft-cap, temperature)
    and, with a soft-cap, its ``tanh`` (the backward's chain rule needs it)."""
    z = torch.mm(hidden.to(compute_dtype), weight.to(compute_dtype).t())
    if bias is not None:
        z.add_(bias.to(compute_dtype))
    z = z.float()
    if logit_scale != 1.0:   # x * 1.0 is x: skipping it changes no bit
        z = z * logit_scale
    t = None
    if softcap is not None:
        t = torch.tanh(z / softcap)
        z = softcap * t
    if inv_t != 1.0:
        z = z * inv_t
    return z, t


def _token_chunk(vocab: int) -> int:
    return max(1, min(4096, CHUNK_ELEMENTS // max(vocab, 1)))


class CpuLogProbFunction(torch.autograd.Function):
    """``trl.kernels.ChunkedLogProbFunction``'s contract (same arguments, outputs and gradients) for CPU tensors."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, temperature, chunk_size, final_logit_softcapping=None,
                logit_scale=1.0, outputs=OPTIONAL):
        ctx.set_materialize_grads(False)
        n_tokens, vocab = hidden.shape[0], weight.shape[0]
        compute_dtype = (torch.get_autocast_dtype(hidden.device.type)
                         if torch.is_autocast_enabled(hidden.device.type) else hidden.dtype)
        args = (compute_dtype, logit_scale, final_logit_softcapping, 1 / temperature)
        f32 = {"device": hidden.device, "dtype": torch.float32}
        log_z = torch.empty(n_tokens, **f32)
        logprobs = torch.empty(n_tokens, **f32)
        entropy = torch.empty(n_tokens, **f32) if "entropy" in outputs else None
        sq = torch.empty(n_tokens, **f32) if "log_sum_sq_probs" in outputs else None
        mean = torch.empty(n_tokens, **f32) if "mean_logits" in outputs else None
        top1 = torch.empty(n_tokens, device=hidden.device, dtype=torch.bool) if "is_top1" in outputs else None
        step = _token_chunk(vocab)
        for a in range(0, n_tokens, step):
            b = min(a + step, n_tokens)
            z, _ = _logits(hidden[a:b], weight, bias, *args)
            target = targets[a:b]
            m = z.amax(-1)
            e = (z - m.unsqueeze(-1)).exp_()
            s = e.sum(-1)
            lz = m + torch.log(s)
            log_z[a:b] = lz
            logprobs[a:b] = z.gather(-1, target.unsqueeze(-1)).squeeze(-1) - lz
            if mean is not None:
                mean[a:b] = z.sum(-1) / vocab
            if top1 is not None:   # TRL: the target reaches the maximum and no earlier token does: the first argmax
                top1[a:b] = z.argmax(-1) == target
            if sq is not None:
                sq[a:b] = torch.log((e * e).sum(-1)) - 2 * torch.log(s)
            if entropy is not None:
                entropy[a:b] = lz - (e * z).sum(-1) / s
        ctx.save_for_backward(hidden, weight, bias, targets, log_z, log_z if entropy is None else entropy)
        ctx.args = args
        ctx.mark_non_differentiable(*(x for x in (sq, mean, top1) if x is not None))
        return logprobs, entropy, sq, mean, top1

    @staticmethod
    def backward(ctx, grad_logprobs, grad_entropy, *_):
        hidden, weight, bias, targets, log_z, entropy = ctx.saved_tensors
        compute_dtype, logit_scale, _, inv_t = ctx.args
        need_hidden, need_weight, need_bias = ctx.needs_input_grad[:3]
        f32 = {"device": hidden.device, "dtype": torch.float32}
        grad_hidden = torch.zeros(hidden.shape, **f32) if need_hidden else None
        grad_weight = torch.zeros(weight.shape, **f32) if need_weight else None
        grad_bias = torch.zeros(bias.shape, **f32) if need_bias else None
        g_lp = grad_logprobs.float() if grad_logprobs is not None else None
        g_ent = grad_entropy.float() if grad_entropy is not None else None
        n_tokens = hidden.shape[0]
        step = _token_chunk(weight.shape[0])
        w = weight.to(compute_dtype)
        for a in range(0, n_tokens, step):
            b = min(a + step, n_tokens)
            h = hidden[a:b].to(compute_dtype)
            z, t = _logits(h, w, bias, *ctx.args)
            log_p = z.sub_(log_z[a:b].unsqueeze(-1))   # TRL's operations in its order, in place where it keeps no copy
            p = torch.exp(log_p) if g_ent is not None else log_p.exp_()
            term = None
            if g_ent is not None:   # d entropy / dz_j = -p_j (log p_j + entropy)
                term = (g_ent[a:b].unsqueeze(-1) * p).mul_(log_p.add_(entropy[a:b].unsqueeze(-1)))
            grad = None
            if g_lp is not None:   # d log p_target / dz_j = 1[j = target] - p_j, times the incoming gradient
                g = g_lp[a:b].unsqueeze(-1)
                target = targets[a:b].unsqueeze(-1)
                at_target = g * (1 - p.gather(-1, target))
                grad = p.mul_(-g).scatter_(-1, target, at_target)
            if term is not None:
                grad = term.neg_() if grad is None else grad.sub_(term)
            if grad is None:
                continue
            if inv_t != 1.0:
                grad = grad * inv_t
            if t is not None:
                grad = grad * (1 - t * t)
            if logit_scale != 1.0:
                grad = grad * logit_scale
            tile = grad.to(compute_dtype)
            if grad_hidden is not None:
                grad_hidden[a:b].addmm_(tile.float(), w.float())
            if grad_weight is not None:
                grad_weight.addmm_(tile.t().float(), h.float())
            if grad_bias is not None:
                grad_bias += tile.sum(dim=0, dtype=torch.float32)
        return (grad_hidden.to(hidden.dtype) if grad_hidden is not None else None,
                grad_weight.to(weight.dtype) if grad_weight is not None else None,
                grad_bias.to(bias.dtype) if grad_bias is not None else None,
                None, None, None, None, None, None)


def use_on_cpu() -> None:
    """TRL's fused LM head (``trl.trainer.utils``, which reads its kernel at call time) calls
    :class:`CpuLogProbFunction` for CPU tensors and TRL's own kernel for any other device (idempotent)."""
    import trl.trainer.utils as trl_utils

    current = getattr(trl_utils, "_ChunkedLogProbFunction", None)
    if current is None or getattr(current, "llmpipe_cpu", False):
        return

    class CpuFirst:
        llmpipe_cpu = True
        trl_kernel = current

        @staticmethod
        def apply(hidden, *args):
            kernel = CpuLogProbFunction if hidden.device.type == "cpu" else current
            return kernel.apply(hidden, *args)

    trl_utils._ChunkedLogProbFunction = CpuFirst
