"""Where PPO's rewards come from (``ppo.reward_model_type``). Every source scores whole conversations (the
prompt's messages plus the generated assistant turn), rendered with a chat template the way the rm stage trains:

- ``lora``: a reward adapter (SEQ_CLS LoRA + score head, as the rm stage saves it) loaded as a second adapter,
  ``reward``, on the policy's own base model: no second copy of the weights;
- ``full``: a separate sequence-classification model (a folder, hub id, or an rm stage's output; LoRA outputs
  are loaded on their recorded base), ``ppo.reward_model_adapters`` on top, ``ppo.reward_model_quantization_bit``;
- ``api``: an HTTP endpoint. llmpipe POSTs ``{"model": "llmpipe", "messages": [text, ...]}`` and expects
  ``{"scores": [float, ...]}`` (the protocol of LLaMA-Factory's ``/v1/score/evaluation``); a bearer token is sent
  from the environment variable ``LLMPIPE_REWARD_API_KEY`` when set. The endpoint is probed before training.

``ppo.reward_model=step:<name>`` is the output of the chained step ``pipeline.before.<name>`` (the train stage's
``reward`` input).
"""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Sequence

from llmpipe.errors import UserError

API_KEY_ENV = "LLMPIPE_REWARD_API_KEY"


class RewardApiError(UserError):
    """The reward endpoint cannot be reached or answers something else than scores."""


class ApiReward:
    def __init__(self, url: str, timeout: float = 60.0):
        self.url, self.timeout = url, timeout

    def _post(self, texts: Sequence[str]) -> list[float]:
        body = json.dumps({"model": "llmpipe", "messages": list(texts)}).encode()
        headers = {"Content-Type": "application/json"}
        if os.environ.get(API_KEY_ENV):
            headers["Authorization"] = f"Bearer {os.environ[API_KEY_ENV]}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        fix = (f"start the scoring server or fix the URL; it must answer POST {{\"messages\": [text, ...]}} with "
               "{\"scores\": [float, ...]}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                answer = json.loads(resp.read().decode() or "null")
        except urllib.error.HTTPError as e:
            raise RewardApiError(f"ppo.reward_model={self.url}: the reward endpoint answered HTTP {e.code} "
                                 f"({e.reason}); {fix}") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise RewardApiError(f"ppo.reward_model={self.url}: cannot reach the reward endpoint ({reason}); {fix}") from None
        except ValueError:
            raise RewardApiError(f"ppo.reward_model={self.url}: the reward endpoint did not answer JSON; {fix}") from None
        scores = answer.get("scores") if isinstance(answer, dict) else None
        if not isinstance(scores, list) or len(scores) != len(texts) or \
                not all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in scores):
            raise RewardApiError(f"ppo.reward_model={self.url}: expected {{\"scores\": [{len(texts)} numbers]}}, got "
                                 f"{str(answer)[:200]}; {fix}")
        return [float(s) for s in scores]

    def check(self) -> None:
        self._post(["llmpipe reward endpoint check"])

    def score(self, conversations: Sequence[list[dict]], render) -> list[float]:
        return self._post([render(c) for c in conversations])


class ModelReward:
    """A separate reward model (llmpipe.training.reward_model.RewardModel); renders with its own tokenizer's
    chat template when it has one, so a reward model of another family scores the text it was trained on."""

    def __init__(self, reward_model):
        self.rm = reward_model

    def score(self, conversations: Sequence[list[dict]], render) -> list[float]:
        texts = self.rm.render(conversations) if self.rm.tokenizer.chat_template else [render(c) for c in conversations]
        return self.rm.score(texts)


class AdapterReward:
    """The reward adapter as adapter ``reward`` of the (LoRA) policy, with its score head beside it."""

    def __init__(self, policy, adapter_dir: Path, tokenizer, batch_size: int = 16):
        import torch
        from peft import PeftConfig, set_peft_model_state_dict
        from safetensors.torch import load_file

        from llmpipe.training.reward_model import RewardModelError

        config = PeftConfig.from_pretrained(str(adapter_dir))
        state = load_file(str(adapter_dir / "adapter_model.safetensors"))
        heads = [k for k in state if k.split(".")[-2] in ("score", "modules_to_save") and "score" in k]
        if len(heads) != 1:
            raise RewardModelError(f"ppo.reward_model={adapter_dir}: not a reward adapter (no score head among its "
                                   "weights); train one with train.stage=rm and finetuning_type=lora")
        weight = state.pop(heads[0])
        config.task_type, config.modules_to_save, config.inference_mode = "CAUSAL_LM", None, True
        policy.add_adapter("reward", config)
        set_peft_model_state_dict(policy, state, adapter_name="reward")
        policy.set_adapter("default")
        base = policy.get_base_model()
        self.body = getattr(base, base.base_model_prefix)
        if weight.shape[-1] != base.config.hidden_size:
            raise RewardModelError(f"ppo.reward_model={adapter_dir}: its score head expects hidden size "
                                   f"{weight.shape[-1]}, the policy has {base.config.hidden_size}; a LoRA reward "
                                   "model must be trained on the policy's own base model (or use reward_model_type=full)")
        param = next(self.body.parameters())
        self.head = torch.nn.Linear(weight.shape[-1], 1, bias=False).to(param.device)
        self.head.weight.data.copy_(weight.reshape(1, -1))
        self.head.requires_grad_(False)
        self.policy, self.tokenizer, self.batch_size = policy, tokenizer, batch_size

    def score(self, conversations: Sequence[list[dict]], render) -> list[float]:
        import torch
        from trl.trainer.utils import use_adapter

        out: list[float] = []
        side, self.tokenizer.padding_side = self.tokenizer.padding_side, "right"
        try:
            for i in range(0, len(conversations), self.batch_size):
                texts = [render(c) for c in conversations[i:i + self.batch_size]]
                enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
                enc = enc.to(self.head.weight.device)
                with torch.no_grad(), use_adapter(self.policy, "reward"):
                    hidden = self.body(input_ids=enc.input_ids, attention_mask=enc.attention_mask).last_hidden_state
                last = enc.attention_mask.sum(-1) - 1
                h = hidden[torch.arange(len(texts)), last]
                out += self.head(h.to(self.head.weight.dtype))[:, 0].float().tolist()
        finally:
            self.tokenizer.padding_side = side
        return out

    def remove(self) -> None:
        self.policy.delete_adapter("reward")


def build_reward(cfg: Any, policy, tokenizer, reward_dir: Path | None, log=print):
    """The reward source of ``ppo.*`` (see the module docstring)."""
    from llmpipe.training.reward_model import load_reward_model, locate

    p = cfg.ppo
    ref = str(p.reward_model)
    if p.reward_model_type == "api":
        source = ApiReward(ref)
        source.check()
        log(f"reward: HTTP endpoint {ref} (reachable)")
        return source
    path = reward_dir if ref.startswith("step:") else Path(ref).expanduser()
    where = locate(path)
    if p.reward_model_type == "lora":
        if not (where / "adapter_config.json").is_file():
            from llmpipe.training.reward_model import RewardModelError

            raise RewardModelError(f"ppo.reward_model={ref}: reward_model_type=lora needs a LoRA reward adapter "
                                   f"folder (adapter_config.json), and {where} is not one; use reward_model_type=full")
        log(f"reward: adapter {where} on the policy's base model")
        return AdapterReward(policy, where, tokenizer)
    adapters = list(p.reward_model_adapters)
    rm = load_reward_model(where if where.exists() else ref, adapters=adapters,
                           quantization_bit=p.reward_model_quantization_bit,
                           device=str(next(policy.parameters()).device))
    log(f"reward: model {where if where.exists() else ref}" + (f" + {', '.join(adapters)}" if adapters else ""))
    return ModelReward(rm)
