"""The data settings one run uses, read once from the config (typed config, DictConfig or a namespace).

``DataOptions.from_cfg(cfg)`` is what every data module works from; it is plain data (JSON-able), so the
load stage can hand it to the train stage inside a stream spec. ``packing`` is already resolved here:
``data.packing=null`` means on for ``train.stage=pt`` only, and ``neat_packing`` implies packing.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from llmpipe.config.train_stages import TRAIN_STAGES

# train.stage -> the rows the load stage builds for it (from the train-stage registry)
STAGE_KIND = {name: s.data_kind for name, s in TRAIN_STAGES.items()}


def cfg_get(cfg, dotted: str, default=None):
    """``cfg.a.b`` for typed configs, DictConfigs, dicts and namespaces; ``default`` when missing or None."""
    obj = cfg
    for part in dotted.split("."):
        obj = obj.get(part, None) if isinstance(obj, dict) else getattr(obj, part, None)
        if obj is None:
            return default
    return obj


def split_names(value) -> list[str]:
    if not value:
        return []
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return [str(s).strip() for s in items if str(s).strip()]


@dataclass
class DataOptions:
    stage: str = "sft"
    seed: int = 42
    dataset: tuple = ()
    eval_dataset: tuple = ()
    dataset_dir: str = "data"
    media_dir: str | None = None
    template: str | None = None
    default_system: str | None = None
    tool_format: str | None = None
    cutoff_len: int | None = 2048
    train_on_prompt: bool = False
    mask_history: bool = False
    packing: bool = False
    neat_packing: bool = False
    streaming: bool = False
    buffer_size: int = 16384
    mix_strategy: str = "concat"
    interleave_probs: tuple | None = None
    max_samples: int | None = None
    val_size: float = 0.0
    eval_on_each_dataset: bool = False
    preprocessing_batch_size: int = 1000
    preprocessing_num_workers: int | None = None
    ignore_pad_token_for_loss: bool = True
    tokenized_path: str | None = None
    overwrite_cache: bool = False

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
        d = lambda key, default=None: cfg_get(cfg, "data." + key, default)  # noqa: E731
        stage = str(cfg_get(cfg, "train.stage", "sft"))
        neat = bool(d("neat_packing", False))
        packing = d("packing")
        packing = (stage == "pt" if packing is None else bool(packing)) or neat
        probs = d("interleave_probs")
        if probs is not None:
            probs = tuple(float(p) for p in split_names(probs))
        seed = cfg_get(cfg, "train.data_seed") or cfg_get(cfg, "train.seed", 42)
        return cls(
            stage=stage, seed=int(seed), dataset=tuple(split_names(d("dataset"))),
            eval_dataset=tuple(split_names(d("eval_dataset"))), dataset_dir=str(d("dataset_dir", "data")),
            media_dir=d("media_dir"), template=d("template"), default_system=d("default_system"),
            tool_format=d("tool_format"), cutoff_len=d("cutoff_len"),
            train_on_prompt=bool(d("train_on_prompt", False)), mask_history=bool(d("mask_history", False)),
            packing=packing, neat_packing=neat, streaming=bool(d("streaming", False)),
            buffer_size=int(d("buffer_size", 16384)), mix_strategy=str(d("mix_strategy", "concat")),
            interleave_probs=probs, max_samples=d("max_samples"), val_size=float(d("val_size", 0.0) or 0.0),
            eval_on_each_dataset=bool(d("eval_on_each_dataset", False)),
            preprocessing_batch_size=int(d("preprocessing_batch_size", 1000)),
            preprocessing_num_workers=d("preprocessing_num_workers"),
            ignore_pad_token_for_loss=bool(d("ignore_pad_token_for_loss", True)),
            tokenized_path=d("tokenized_path"), overwrite_cache=bool(d("overwrite_cache", False)),
        )
