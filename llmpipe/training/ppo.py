"""train.stage=ppo: PPO with a reward model, as a compact loop of llmpipe's own on transformers/PEFT pieces.

TRL removed its PPOTrainer after 1.12; rather than pinning an old TRL (LLaMA-Factory's trl 0.9 pin is one of
its most-reported problems), llmpipe implements the algorithm in ~400 lines (this module, ppo_core, ppo_rollout,
ppo_rewards) that depend only on stable APIs: ``model.generate``, a forward pass, PEFT's adapter switching.

One PPO step: sample responses for ``per_device_train_batch_size x gradient_accumulation_steps x ppo.buffer_size``
prompts; score them (``ppo.reward_model_type``; ``ppo.score_norm`` normalises with running statistics); compute
per-token rewards = score on the last token - kl_coef * (log pi - log pi_ref) (``ppo.whiten_rewards``), values
from a value head on the policy's last hidden state, advantages by GAE (whitened); then ``ppo.epochs`` passes
of clipped PPO over the buffer in mini-batches of ``per_device_train_batch_size`` (AdamW, the train family's
learning rate/schedule/clipping, one optimizer step per ``gradient_accumulation_steps`` mini-batches); the KL
coefficient adapts towards ``ppo.target``. The reference is the policy with its adapter disabled (LoRA), a
frozen copy of the base (freeze/full), or ``pref.ref_model``. Checkpoints (train.save_steps) resume.

Metrics, on the held-out prompts (data.eval_dataset / val_size; else the first 64 training prompts), before
(``..._initial``) and after training: ``reward_mean``, the mean reward of answers sampled with the generate
family's settings (what PPO maximises; PROBE_SAMPLES per prompt from a fixed seed, so that before and after are
comparable), and ``reward_mean_greedy``, that of greedy answers. A policy can raise its expected reward well
before its single most likely answer changes, so the greedy figure lags behind.
"""
from __future__ import annotations

import json
import math
import random

from llmpipe.config.train_stages import implements
from llmpipe.training.job import TrainJob

INIT_KL_COEF, CLIP, CLIP_VALUE, VF_COEF, GAMMA, LAM = 0.2, 0.2, 0.2, 0.1, 1.0, 0.95
PROBE_PROMPTS, PROBE_SAMPLES = 64, 2


def mean_reward(model, prompts, tokenizer, reward, render, cfg, batch_size: int, greedy: bool) -> float:
    """Mean reward of answers to ``prompts``: greedy, or PROBE_SAMPLES sampled answers per prompt drawn from
    the seed train.seed (the caller's random state is left as it was)."""
    import torch

    from llmpipe.training.ppo_rollout import generate, generation_config

    gen = generation_config(cfg, tokenizer, greedy=greedy)
    todo = prompts if not gen.do_sample else [p for p in prompts for _ in range(PROBE_SAMPLES)]
    scores: list[float] = []
    with torch.random.fork_rng():
        torch.manual_seed(cfg.train.seed)
        for i in range(0, len(todo), batch_size):
            roll = generate(model, todo[i:i + batch_size], tokenizer, gen)
            scores += reward.score(roll.conversations, render)
    return sum(scores) / max(1, len(scores))


def probe(model, prompts, tokenizer, reward, render, cfg, batch_size: int) -> dict[str, float]:
    """{"reward_mean": sampled answers, "reward_mean_greedy": greedy answers} (one figure when not sampling)."""
    greedy = mean_reward(model, prompts, tokenizer, reward, render, cfg, batch_size, greedy=True)
    sampled = mean_reward(model, prompts, tokenizer, reward, render, cfg, batch_size, greedy=False) \
        if cfg.generate.do_sample else greedy
    return {"reward_mean": sampled, "reward_mean_greedy": greedy}


class PPOLoop:
    def __init__(self, ctx: TrainJob, policy, ref_model, reward, tokenizer, prompts, acc):
        """``acc``: the run's Accelerator (llmpipe.training.ppo_accel.make_accelerator), which the models are on."""
        import torch

        self.acc = acc
        self.ctx, self.cfg = ctx, ctx.obj
        self.policy, self.ref, self.reward, self.tok = policy, ref_model, reward, tokenizer
        self.prompts = prompts
        t, p = self.cfg.train, self.cfg.ppo
        self.mini = t.per_device_train_batch_size
        self.accum = t.gradient_accumulation_steps
        self.batch = self.mini * self.accum * p.buffer_size
        self.steps = t.max_steps if t.max_steps and t.max_steps > 0 else \
            max(1, math.ceil(t.num_train_epochs * len(prompts) / self.batch))
        hidden = policy.config.hidden_size
        for module in policy.modules():   # the same log-probabilities when sampling and when optimising
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        torch.manual_seed(t.seed)
        self.value_head = torch.nn.Linear(hidden, 1).to(next(policy.parameters()).device)
        torch.nn.init.zeros_(self.value_head.weight)
        torch.nn.init.zeros_(self.value_head.bias)
        self.params = [q for q in policy.parameters() if q.requires_grad] + list(self.value_head.parameters())
        optimizer = torch.optim.AdamW(self.params, lr=t.learning_rate, betas=(t.adam_beta1, t.adam_beta2),
                                      eps=t.adam_epsilon, weight_decay=t.weight_decay)
        from transformers import get_scheduler

        total = self.steps * p.epochs * p.buffer_size
        warmup = int(t.warmup_steps * total) if 0 < t.warmup_steps < 1 else int(t.warmup_steps)
        self.scheduler = get_scheduler(t.lr_scheduler_type, optimizer, num_warmup_steps=warmup,
                                       num_training_steps=total, scheduler_specific_kwargs=dict(t.lr_scheduler_kwargs or {}))
        self.optimizer = acc.prepare_optimizer(optimizer)   # fp16: the loss scaler steps it
        from llmpipe.training.ppo_core import AdaptiveKL, RunningMoments

        self.kl = AdaptiveKL(INIT_KL_COEF, p.target)
        self.moments = RunningMoments()
        self.step, self.history, self._orders = 0, [], {}
        self.temperature = self.cfg.generate.temperature if self.cfg.generate.do_sample else 1.0

    # --- reference log-probabilities -----------------------------------------------------------------------
    def ref_logprobs(self, ids, mask, start):
        from llmpipe.training.ppo_rollout import forward

        if self.ref is not None:
            return forward(self.ref, None, ids, mask, start, self.temperature)[0]
        with self.policy.disable_adapter():
            return forward(self.policy, None, ids, mask, start, self.temperature)[0]

    def render(self, conversation) -> str:
        return self.tok.apply_chat_template(conversation, tokenize=False)

    # --- one PPO step ----------------------------------------------------------------------------------------
    def prompt_batch(self) -> list:
        """The prompts of this step: the training prompts in a seeded order per epoch, continuing across steps."""
        n, out = len(self.prompts), []
        for g in range(self.step * self.batch, (self.step + 1) * self.batch):
            epoch = g // n
            if epoch not in self._orders:
                order = list(range(n))
                random.Random(f"{self.cfg.train.seed}:{epoch}").shuffle(order)
                self._orders = {epoch: order}
            out.append(self.prompts[self._orders[epoch][g % n]])
        return out

    def experience(self):
        import torch

        from llmpipe.training.ppo_core import gae, token_rewards, whiten
        from llmpipe.training.ppo_rollout import chunks, forward, generate, generation_config

        batch = self.prompt_batch()
        with self.acc.autocast():
            roll = generate(self.policy, batch, self.tok, generation_config(self.cfg, self.tok))
        raw = torch.tensor(self.reward.score(roll.conversations, self.render), dtype=torch.float32)
        scores = raw
        if self.cfg.ppo.score_norm:
            self.moments.update(raw)
            scores = self.moments.normalize(raw)
        logps, values, refs = [], [], []
        self.policy.eval()
        with torch.no_grad(), self.acc.autocast():
            for sl in chunks(len(batch), self.mini):
                lp, v = forward(self.policy, self.value_head, roll.ids[sl], roll.mask[sl], roll.start, self.temperature)
                logps.append(lp), values.append(v)
                refs.append(self.ref_logprobs(roll.ids[sl], roll.mask[sl], roll.start))
        self.policy.train()
        logp, value, ref = torch.cat(logps), torch.cat(values), torch.cat(refs)
        mask = roll.response_mask.to(logp.dtype)
        rewards, kl = token_rewards(scores.to(logp.device), logp, ref, mask, self.kl.value)
        if self.cfg.ppo.whiten_rewards:
            rewards = whiten(rewards, mask, shift_mean=False)
        adv, returns = gae(rewards, value, mask, GAMMA, LAM)
        adv = whiten(adv, mask)
        stats = {"reward": raw.mean().item(), "kl": kl.sum(-1).mean().item(),
                 "response_length": mask.sum(-1).mean().item()}
        return roll, logp, value, adv, returns, mask, stats

    def update(self, roll, old_logp, old_values, adv, returns, mask) -> dict[str, float]:
        import torch

        from llmpipe.training.ppo_core import ppo_losses
        from llmpipe.training.ppo_rollout import forward

        t = self.cfg.train
        sums: dict[str, float] = {"policy_loss": 0.0, "value_loss": 0.0, "clipfrac": 0.0, "approx_kl": 0.0}
        count = 0
        for _ in range(self.cfg.ppo.epochs):
            order = torch.randperm(len(old_logp)).tolist()
            for k, i in enumerate(range(0, len(order), self.mini)):
                idx = order[i:i + self.mini]
                with self.acc.autocast():
                    logp, values = forward(self.policy, self.value_head, roll.ids[idx], roll.mask[idx], roll.start,
                                           self.temperature)
                pg, vf, st = ppo_losses(logp, old_logp[idx], values, old_values[idx], adv[idx], returns[idx],
                                        mask[idx], CLIP, CLIP_VALUE)
                self.acc.backward((pg + VF_COEF * vf) / self.accum)
                if (k + 1) % self.accum == 0 or i + self.mini >= len(order):
                    if t.max_grad_norm and t.max_grad_norm > 0:
                        self.acc.clip_grad_norm_(self.params, t.max_grad_norm)
                    self.optimizer.step()
                    self.scheduler.step()
                    self.optimizer.zero_grad(set_to_none=True)
                for key, v in (("policy_loss", pg.item()), ("value_loss", vf.item()), *st.items()):
                    sums[key] += v
                count += 1
        out = {k: v / max(1, count) for k, v in sums.items()}
        out["loss"] = out["policy_loss"] + VF_COEF * out["value_loss"]
        return out

    def run(self) -> None:
        from llmpipe.training.guards import TrainingDiverged, check_finite, diverged_message
        from llmpipe.training.ppo_checkpoint import checkpoint_due, save_checkpoint

        while self.step < self.steps:
            try:
                roll, logp, values, adv, returns, mask, stats = self.experience()
            except RuntimeError as e:   # sampling from NaN/inf logits: the last update broke the weights
                if self.step == 0 or "nan" not in str(e).lower():
                    raise
                raise TrainingDiverged(diverged_message({"sampling probabilities": math.nan}, self.step + 1,
                                                        self.cfg)) from e
            stats.update(self.update(roll, logp, values, adv, returns, mask))
            stats["kl_coef"] = self.kl.value
            self.kl.update(stats["kl"], self.batch)
            self.step += 1
            stats.update(step=self.step, learning_rate=self.scheduler.get_last_lr()[0])
            self.history.append({k: round(v, 6) if isinstance(v, float) else v for k, v in stats.items()})
            if self.step % max(1, int(self.cfg.train.logging_steps)) == 0 or self.step == self.steps:
                self.acc.log({k: v for k, v in stats.items() if isinstance(v, (int, float)) and k != "step"},
                             step=self.step)
                self.ctx.log(f"step {self.step}/{self.steps}  reward={stats['reward']:.4g}  kl={stats['kl']:.4g}  "
                             f"loss={stats['loss']:.4g}  kl_coef={self.kl.value:.4g}")
            check_finite(stats, self.step, self.cfg, metrics=("loss", "policy_loss", "value_loss", "kl"))
            if checkpoint_due(self.cfg, self.step, self.steps):
                save_checkpoint(self)


def _prompts(ds, tokenizer, cfg) -> list:
    from llmpipe.training.ppo_rollout import encode_prompts

    return encode_prompts([row["prompt"] for row in ds], tokenizer, cfg.data.cutoff_len)


@implements("ppo")
def train_ppo(ctx: TrainJob) -> dict:
    from llmpipe.data.published import open_published, read_source
    from llmpipe.training.causal import load_saved_tokenizer, prepare_model
    from llmpipe.training.ppo_accel import (
        apply_kernels,
        enable_checkpointing,
        make_accelerator,
        place,
        set_log_level,
        start_trackers,
    )
    from llmpipe.training.ppo_rewards import build_reward
    from llmpipe.training.reference import load_reference

    cfg = ctx.obj
    set_log_level(cfg)
    acc = make_accelerator(cfg, ctx.out / "tensorboard", ctx.job_dir)
    load_dir = ctx.load_dir
    tokenizer = load_saved_tokenizer(load_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    train_ds, eval_ds = open_published(load_dir)
    prompts = _prompts(train_ds, tokenizer, cfg)
    held_out = _prompts(eval_ds, tokenizer, cfg) if eval_ds is not None else prompts[:PROBE_PROMPTS]
    # an HTTP reward endpoint is probed first: an unreachable one fails before any model is loaded
    reward = build_reward(cfg, None, tokenizer, ctx.reward_dir, ctx.log) if cfg.ppo.reward_model_type == "api" else None
    policy = place(prepare_model(ctx), acc.device, ctx.log)   # every model of PPO on the accelerator
    apply_kernels(policy, cfg, ctx.log)
    enable_checkpointing(policy, cfg)
    reward = reward or build_reward(cfg, policy, tokenizer, ctx.reward_dir, ctx.log)   # on the policy's device
    ref = place(load_reference(cfg, read_source(load_dir), tokenizer, ctx.cache_root, ctx.log), acc.device, ctx.log)
    loop = PPOLoop(ctx, policy, ref, reward, tokenizer, prompts, acc)
    ctx.log(f"PPO on {acc.device} (mixed precision: {acc.mixed_precision})")
    start_trackers(acc, cfg, ctx.name)
    bs = cfg.train.per_device_eval_batch_size
    initial_path = ctx.work / "initial_reward.json"
    initial = json.loads(initial_path.read_text()) if initial_path.exists() else {}
    if "reward_mean_greedy" not in initial:
        initial = probe(policy, held_out, tokenizer, reward, loop.render, cfg, bs)
        initial_path.write_text(json.dumps(initial))
    ctx.log(f"mean reward of answers to {len(held_out)} held-out prompts before training: "
            f"{initial['reward_mean']:.4f} sampled, {initial['reward_mean_greedy']:.4f} greedy")
    from llmpipe.training.ppo_checkpoint import resume

    resume(loop)
    ctx.log(f"PPO: {loop.steps} steps of {loop.batch} prompts, {cfg.ppo.epochs} epochs each, target KL {cfg.ppo.target}")
    loop.run()
    final = probe(policy, held_out, tokenizer, reward, loop.render, cfg, bs)
    ctx.log(f"mean reward of held-out answers after training: {final['reward_mean']:.4f} sampled (before: "
            f"{initial['reward_mean']:.4f}), {final['reward_mean_greedy']:.4f} greedy (before: "
            f"{initial['reward_mean_greedy']:.4f})")
    metrics = {"reward_mean_initial": initial["reward_mean"], "reward_mean": final["reward_mean"],
               "reward_mean_gain": final["reward_mean"] - initial["reward_mean"],
               "reward_mean_greedy_initial": initial["reward_mean_greedy"],
               "reward_mean_greedy": final["reward_mean_greedy"],
               "global_step": loop.step, "kl_coef": loop.kl.value,
               "train_reward_last": loop.history[-1]["reward"] if loop.history else None}
    if hasattr(reward, "remove"):
        reward.remove()   # the reward adapter is not part of the trained policy
    _save(ctx, loop, tokenizer, metrics)
    acc.end_training()
    return {"metrics": metrics}


def _save(ctx: TrainJob, loop: PPOLoop, tokenizer, metrics: dict) -> None:
    from safetensors.torch import save_file

    from llmpipe.models.trainable import save
    from llmpipe.training.plot import save_loss_plot

    cfg = ctx.obj
    sub = "adapter" if cfg.train.finetuning_type == "lora" else "model"
    save(loop.policy, ctx.out / sub, cfg, log=ctx.log,
         initial_adapter=ctx.initial_adapter)
    tokenizer.save_pretrained(str(ctx.out / sub))
    save_file({k: v.contiguous() for k, v in loop.value_head.state_dict().items()}, str(ctx.out / "value_head.safetensors"))
    (ctx.out / "log_history.json").write_text(json.dumps(loop.history, indent=1))
    (ctx.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if cfg.train.plot_loss:   # a plot, or a line saying why there is none
        if save_loss_plot(loop.history, ctx.out / "loss.png", f"{ctx.name} (ppo)", ctx.log) is not None:
            _plot_reward(loop.history, ctx.out / "reward.png", f"{ctx.name} (ppo)")


def _plot_reward(history: list[dict], path, title: str) -> None:
    from llmpipe.training.plot import plot_series

    steps = [h["step"] for h in history]
    plot_series(path, [("mean reward (sampled)", steps, [h["reward"] for h in history], "-"),
                       ("KL from the reference", steps, [h["kl"] for h in history], "-")],
                title=title, xlabel="PPO step")
