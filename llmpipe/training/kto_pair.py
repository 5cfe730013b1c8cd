"""``pref.loss=kto_pair``: the paired KTO loss of the HALOs report (eqn 7), which TRL's DPOTrainer dropped in
favour of its unpaired KTOTrainer. Each pair gives a desirable and an undesirable example; the KL reference
point of each half is the batch mean of the *other* half's policy/reference log-ratio (detached, clamped at 0):

    loss = mean( 1 - sigmoid(beta * (logratio_chosen - KL_rejected)),
                 1 - sigmoid(beta * (KL_chosen - logratio_rejected)) )

plus ``pref.ftx`` times the SFT loss of the chosen responses. The forward passes, the reference (adapter disabled,
a copy of a resumed adapter, or a reference model) and the reward metrics are TRL's DPOTrainer's own.
"""
from __future__ import annotations

import torch
from accelerate.utils import is_peft_model
from trl import DPOTrainer
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.utils import use_adapter


def kto_pair_losses(chosen_logratios, rejected_logratios, beta: float):
    """Per-example losses (chosen half, then rejected half) of the paired KTO loss."""
    kl_chosen = chosen_logratios.detach().mean().clamp(min=0)
    kl_rejected = rejected_logratios.detach().mean().clamp(min=0)
    return torch.cat((1 - torch.sigmoid(beta * (chosen_logratios - kl_rejected)),
                      1 - torch.sigmoid(beta * (kl_chosen - rejected_logratios))), 0)


class KtoPairTrainer(DPOTrainer):
    def __init__(self, *args, ftx: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.ftx = ftx

    def _reference_logps(self, kwargs, labels, n):
        if self.precompute_ref_logps:
            return None
        with torch.no_grad(), disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs):
            if is_peft_model(self.model) and self.ref_model is None:
                unwrapped = self.accelerator.unwrap_model(self.model)
                with use_adapter(unwrapped, adapter_name="ref" if "ref" in unwrapped.peft_config else None):
                    out = self.model(**kwargs, labels=labels, fused_lm_head=True)
            else:
                out = self.ref_model(**kwargs, labels=labels, fused_lm_head=True)
        return out.log_probs[:, -n:].sum(dim=1)

    def _compute_loss(self, model, inputs, return_outputs):
        mode = "train" if self.model.training else "eval"
        completion_mask = inputs["completion_mask"]
        kwargs = {k: v for k, v in inputs.items()
                  if k not in ("completion_mask", "ref_chosen_logps", "ref_rejected_logps")}
        kwargs["use_cache"] = False
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        outputs = model(**kwargs, labels=labels, fused_lm_head=True)
        shift_mask = completion_mask[..., 1:]
        n = shift_mask.size(1)
        token_logps = outputs.log_probs[:, -n:]
        chosen_logps, rejected_logps = token_logps.sum(dim=1).chunk(2, dim=0)
        ref = self._reference_logps(kwargs, labels, n)
        if ref is None:
            ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        else:
            ref_chosen, ref_rejected = ref.chunk(2, dim=0)
        chosen_lr, rejected_lr = chosen_logps - ref_chosen, rejected_logps - ref_rejected
        loss = kto_pair_losses(chosen_lr, rejected_lr, self.beta).mean()
        if self.ftx > 0:
            mask_c, _ = shift_mask.chunk(2, dim=0)
            tok_c, _ = token_logps.chunk(2, dim=0)
            loss = loss + self.ftx * -tok_c[mask_c.bool()].mean()
        self._record(mode, self.beta * chosen_lr.detach(), self.beta * rejected_lr.detach(), chosen_logps,
                     rejected_logps)
        return (loss, outputs) if return_outputs else loss

    def _record(self, mode, chosen_rewards, rejected_rewards, chosen_logps, rejected_logps) -> None:
        gather = self.accelerator.gather
        m = self._metrics[mode]
        m["rewards/chosen"].append(gather(chosen_rewards).mean().item())
        m["rewards/rejected"].append(gather(rejected_rewards).mean().item())
        m["rewards/accuracies"].append(gather((chosen_rewards > rejected_rewards).float()).mean().item())
        m["rewards/margins"].append(gather(chosen_rewards - rejected_rewards).mean().item())
        m["logps/chosen"].append(gather(chosen_logps.detach()).mean().item())
        m["logps/rejected"].append(gather(rejected_logps.detach()).mean().item())

