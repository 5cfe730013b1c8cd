"""One optimizer made of several (Muon for the hidden 2-D weights, AdamW for the rest: muon.use_muon), so that
the Trainer, its learning-rate scheduler and its checkpoints see a single torch optimizer."""
from __future__ import annotations

import torch


class MuonWithAdamW(torch.optim.Optimizer):
    """``parts``' param_groups are this optimizer's (the scheduler sets every learning rate); step, zero_grad and
    state_dict go to each part."""

    def __init__(self, parts: list[torch.optim.Optimizer]):
        self.parts = parts
        super().__init__([p for o in parts for g in o.param_groups for p in g["params"]], {})
        self.param_groups = [g for o in parts for g in o.param_groups]

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for o in self.parts:
            o.step()
        return loss

    def state_dict(self):
        return {"parts": [o.state_dict() for o in self.parts]}

    def load_state_dict(self, state_dict):
        for o, sd in zip(self.parts, state_dict["parts"]):
            o.load_state_dict(sd)
        self.param_groups = [g for o in self.parts for g in o.param_groups]
