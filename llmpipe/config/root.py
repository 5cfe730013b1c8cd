"""The root configuration: one field per family. Registered in Hydra's ConfigStore as ``llmpipe_schema``."""
from __future__ import annotations

from dataclasses import dataclass, field

from llmpipe.config.families.apollo import ApolloConfig
from llmpipe.config.families.badam import BadamConfig
from llmpipe.config.families.data import DataConfig
from llmpipe.config.families.eval import EvalConfig
from llmpipe.config.families.export import ExportConfig
from llmpipe.config.families.freeze import FreezeConfig
from llmpipe.config.families.galore import GaloreConfig
from llmpipe.config.families.generate import GenerateConfig
from llmpipe.config.families.infer import InferConfig
from llmpipe.config.families.launch import LaunchConfig
from llmpipe.config.families.lora import LoraConfig
from llmpipe.config.families.model import ModelConfig
from llmpipe.config.families.muon import MuonConfig
from llmpipe.config.families.oft import OftConfig
from llmpipe.config.families.pipeline import PipelineConfig
from llmpipe.config.families.ppo import PpoConfig
from llmpipe.config.families.pref import PrefConfig
from llmpipe.config.families.quantization import QuantizationConfig
from llmpipe.config.families.run import RunConfig
from llmpipe.config.families.serve import ServeConfig
from llmpipe.config.families.train import TrainConfig
from llmpipe.config.families.vision import VisionConfig

FAMILIES = (
    "model", "data", "train", "lora", "oft", "freeze", "quantization", "galore", "apollo", "badam", "muon", "pref",
    "ppo", "export", "vision", "generate", "infer", "eval", "launch", "run", "pipeline", "serve",
)


@dataclass
class LlmpipeConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    oft: OftConfig = field(default_factory=OftConfig)
    freeze: FreezeConfig = field(default_factory=FreezeConfig)
    quantization: QuantizationConfig = field(default_factory=QuantizationConfig)
    galore: GaloreConfig = field(default_factory=GaloreConfig)
    apollo: ApolloConfig = field(default_factory=ApolloConfig)
    badam: BadamConfig = field(default_factory=BadamConfig)
    muon: MuonConfig = field(default_factory=MuonConfig)
    pref: PrefConfig = field(default_factory=PrefConfig)
    ppo: PpoConfig = field(default_factory=PpoConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    vision: VisionConfig = field(default_factory=VisionConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    infer: InferConfig = field(default_factory=InferConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    launch: LaunchConfig = field(default_factory=LaunchConfig)
    run: RunConfig = field(default_factory=RunConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)


def register_schema() -> None:
    """Put the root schema into Hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="llmpipe_schema", node=LlmpipeConfig, provider="llmpipe")
