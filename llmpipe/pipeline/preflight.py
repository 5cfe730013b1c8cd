"""Pre-flight: every rule of every layer, run on a composed configuration before anything is imported that
needs torch. The config's own rules (llmpipe.config.rules), the data's (llmpipe.data.rules) and the model's
(llmpipe.models.rules) register in one rulebook; this module is the one place that gathers them, so no caller can validate with half the rules."""
from __future__ import annotations

from typing import Any

from llmpipe.config import rules as _config_rules  # noqa: F401  (registers the configuration's rules)
from llmpipe.config.environment import Environment
from llmpipe.config.rulebook import RULES, Rule
from llmpipe.config.validate import Validated, check
from llmpipe.data import rules as _data_rules  # noqa: F401  (registers the rules on the data's own facts)
from llmpipe.data import mc_rules as _mc_rules  # noqa: F401  (eval.task, eval.save_dir)
from llmpipe.models import rules as _model_rules  # noqa: F401  (registers the rules on the model's own facts)
from llmpipe.models import context_rules as _context_rules  # noqa: F401  (data.cutoff_len against the model's positions)
from llmpipe.models import vision_rules as _vision_rules  # noqa: F401  (vision.* flags, media data, VLM stages)
from llmpipe.models import vision_export_rules as _vision_export_rules  # noqa: F401  (GPTQ export of a VLM)
from llmpipe.problems import Problem

__all__ = ["RULES", "Rule", "Validated", "validate"]


def validate(cfg: Any, env: Environment | None = None) -> tuple[Validated | None, list[Problem]]:
    """(validated config, []) or (None, every problem found)."""
    return check(cfg, env)
