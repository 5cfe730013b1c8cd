"""The PPO arithmetic (Schulman et al. 2017; the RLHF form of Ziegler et al. 2019 / Ouyang et al. 2022), as
small functions over [batch, response tokens] tensors with a response mask:

- per-token rewards: -kl_coef * (log pi - log pi_ref) on every response token, plus the reward model's score
  on the last one (``token_rewards``);
- generalised advantage estimation (``gae``, gamma and lambda), returns = advantages + values;
- the clipped policy objective and the clipped value loss (``ppo_losses``);
- the adaptive KL controller (``AdaptiveKL``: the KL coefficient follows ``ppo.target``);
- whitening (``whiten``: ``ppo.whiten_rewards``, advantages) and running score statistics
  (``RunningMoments``: ``ppo.score_norm``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim=None) -> torch.Tensor:
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1.0)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def masked_var(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mean = masked_mean(x, mask)
    return masked_mean((x - mean) ** 2, mask)


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """(x - mean) / std over the masked entries; ``shift_mean=False`` keeps the mean (rewards)."""
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return out * mask.to(x.dtype)


def token_rewards(scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor,
                  kl_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(rewards, kl): the KL penalty on every response token, the score added on the last one."""
    kl = (logprobs - ref_logprobs) * mask
    rewards = -kl_coef * kl
    last = (mask.sum(-1) - 1).clamp(min=0).long()
    rewards[torch.arange(len(scores)), last] += scores.to(rewards.dtype)
    return rewards, kl


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, returns) by generalised advantage estimation over the response tokens."""
    values, rewards = values * mask, rewards * mask
    n = rewards.size(1)
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(n)):
        next_value = values[:, t + 1] if t + 1 < n else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last
        advantages[:, t] = last
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def ppo_losses(logprobs, old_logprobs, values, old_values, advantages, returns, mask, cliprange: float = 0.2,
               cliprange_value: float = 0.2) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """(policy loss, value loss, statistics) of the clipped PPO objective."""
    ratio = torch.exp(logprobs - old_logprobs)
    pg1 = -advantages * ratio
    pg2 = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    pg_loss = masked_mean(torch.max(pg1, pg2), mask)
    v_clipped = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    vf_loss = 0.5 * masked_mean(torch.max((values - returns) ** 2, (v_clipped - returns) ** 2), mask)
    with torch.no_grad():
        stats = {"clipfrac": masked_mean((pg2 > pg1).float(), mask).item(),
                 "approx_kl": 0.5 * masked_mean((logprobs - old_logprobs) ** 2, mask).item()}
    return pg_loss, vf_loss, stats


class AdaptiveKL:
    """The KL coefficient moves (by at most 20% of n_steps/horizon per update) so that the measured KL of the
    policy from the reference tracks ``target`` (Ziegler et al. 2019)."""

    def __init__(self, init: float, target: float, horizon: int = 10000):
        self.value, self.target, self.horizon = float(init), float(target), int(horizon)

    def update(self, current_kl: float, n_steps: int) -> float:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value


@dataclass
class RunningMoments:
    """Running mean and standard deviation of the reward scores (merged batch by batch)."""
    mean: float = 0.0
    var: float = 1.0
    count: float = 1e-24

    def update(self, xs: torch.Tensor) -> None:
        xs = xs.double()
        n, mean = xs.numel(), xs.mean().item()
        var = xs.var(unbiased=False).item() if n > 1 else 0.0
        total = self.count + n
        delta = mean - self.mean
        self.var = (self.var * self.count + var * n + delta ** 2 * self.count * n / total) / total
        self.mean += delta * n / total
        self.count = total

    @property
    def std(self) -> float:
        return math.sqrt(max(self.var, 1e-12))

    def normalize(self, xs: torch.Tensor) -> torch.Tensor:
        return (xs - self.mean) / self.std
