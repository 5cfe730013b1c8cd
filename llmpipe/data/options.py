"""The data settings one run uses, read once from the typed config (or a namespace shaped like it).

``DataOptions.from_cfg(cfg)`` is what every data module works from; it is plain data (JSON-able), so the
load stage can hand it to the train stage inside a stream spec. Its defaults are the data family's
(llmpipe.config.families.data.DataConfig; stage and seed: the train family's), stated there once.
``packing`` is already resolved here: ``data.packing=null`` means on for ``train.stage=pt`` only, and
``neat_packing`` implies packing. The list flags (``data.dataset``, ``data.eval_dataset``,
``data.interleave_probs``) arrive as lists (llmpipe.config.typed) and are kept as tuples, the probabilities
as numbers.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from llmpipe.config.families.data import DataConfig
from llmpipe.config.families.train import TrainConfig
from llmpipe.config.train_stages import TRAIN_STAGES

# train.stage -> the rows the load stage builds for it (from the train-stage registry)
STAGE_KIND = {name: s.data_kind for name, s in TRAIN_STAGES.items()}

_DATA, _TRAIN = DataConfig(), TrainConfig()   # the families' defaults
_DATA_FIELDS = frozenset(f.name for f in fields(DataConfig))


def cfg_get(cfg, dotted: str, default=None):
    """``cfg.a.b`` for typed configs, dicts and namespaces; ``default`` when missing or None."""
    obj = cfg
    for part in dotted.split("."):
        obj = obj.get(part, None) if isinstance(obj, dict) else getattr(obj, part, None)
        if obj is None:
            return default
    return obj


@dataclass
class DataOptions:
    stage: str = _TRAIN.stage
    seed: int = _TRAIN.seed
    dataset: tuple = ()
    eval_dataset: tuple = ()
    dataset_dir: str = _DATA.dataset_dir
    media_dir: str | None = _DATA.media_dir
    template: str | None = _DATA.template
    default_system: str | None = _DATA.default_system
    tool_format: str | None = _DATA.tool_format
    cutoff_len: int | None = _DATA.cutoff_len
    train_on_prompt: bool = _DATA.train_on_prompt
    mask_history: bool = _DATA.mask_history
    enable_thinking: bool | None = _DATA.enable_thinking  # None: follow the data (reasoning templates)
    preserve_thinking: bool = _DATA.preserve_thinking
    packing: bool = False                   # resolved (data.packing=null: on for pt only)
    neat_packing: bool = _DATA.neat_packing
    streaming: bool = _DATA.streaming
    buffer_size: int = _DATA.buffer_size
    mix_strategy: str = _DATA.mix_strategy
    interleave_probs: tuple | None = None   # numbers; None when unset
    max_samples: int | None = _DATA.max_samples
    val_size: float = _DATA.val_size
    eval_on_each_dataset: bool = _DATA.eval_on_each_dataset
    preprocessing_batch_size: int = _DATA.preprocessing_batch_size
    preprocessing_num_workers: int | None = _DATA.preprocessing_num_workers
    ignore_pad_token_for_loss: bool = _DATA.ignore_pad_token_for_loss
    tokenized_path: str | None = _DATA.tokenized_path
    overwrite_cache: bool = _DATA.overwrite_cache

    @property
    def kind(self) -> str:
        return STAGE_KIND.get(self.stage, "")

    @property
    def media_root(self) -> str:
        return self.media_dir or self.dataset_dir

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DataOptions":
        known = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in known})

    @classmethod
    def from_cfg(cls, cfg) -> "DataOptions":
        """``data.<field>`` for every field of the data family; one that is missing or None takes its default."""
        kw = {f.name: cfg_get(cfg, "data." + f.name, f.default) for f in fields(cls) if f.name in _DATA_FIELDS}
        stage = str(cfg_get(cfg, "train.stage", cls.stage))
        packing = cfg_get(cfg, "data.packing")
        kw.update(
            stage=stage, seed=int(cfg_get(cfg, "train.data_seed") or cfg_get(cfg, "train.seed", cls.seed)),
            dataset=tuple(kw["dataset"]), eval_dataset=tuple(kw["eval_dataset"]),
            packing=(stage == "pt" if packing is None else bool(packing)) or bool(kw["neat_packing"]),
            interleave_probs=tuple(float(p) for p in kw["interleave_probs"] or ()) or None,
            val_size=float(kw["val_size"] or 0.0),
        )
        data = cfg_get(cfg, "data")   # enable_thinking: null is a value of its own (follow the data)
        if data is not None and (("enable_thinking" in data) if isinstance(data, dict) else hasattr(data, "enable_thinking")):
            et = cfg_get(cfg, "data.enable_thinking")
            kw["enable_thinking"] = None if et is None else bool(et)
        return cls(**kw)
