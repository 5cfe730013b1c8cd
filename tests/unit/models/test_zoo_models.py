"""The architecture zoo (llmpipe.models.zoo) at the model level, one parametrised test per architecture: the
modules LoRA's target=all adapts, which parameters freeze trains, LLaMA Pro's identity blocks (found on the model,
not from a table), full fine-tuning lowering the loss, QLoRA with HQQ on CPU (one step), and the MoE router loss.
The pipeline runs (DPO, merge, export, fresh-process reload, chat) are in tests/integration/test_zoo.py."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.slow   # builds and trains 13 tiny models (about a second each)

from methods_support import cfg_of

from llmpipe.models import zoo

X = torch.randint(4, 2048, (2, 16), generator=torch.Generator().manual_seed(1))
ATTN = {"q_proj", "k_proj", "v_proj", "o_proj"}
MLP = {"gate_proj", "up_proj", "down_proj"}
# what lora.target=all adapts: every nn.Linear but the output head, as modules, and the routed experts' fused 3-D
# weights (transformers 5: experts.gate_up_proj / experts.down_proj) through PEFT's target_parameters
# (llmpipe.models.moe_lora). DeepSeek-V3's dense MLP and shared experts are targeted by full path: PEFT would
# move the leaf names gate_proj/up_proj/down_proj of that model type to the fused experts.
TARGETS = {
    "builtin:tiny-llama3": ATTN | MLP, "builtin:tiny-qwen2": ATTN | MLP, "builtin:tiny-qwen3": ATTN | MLP,
    "builtin:tiny-qwen3-moe": ATTN, "builtin:tiny-mistral": ATTN | MLP, "builtin:tiny-mixtral": ATTN,
    "builtin:tiny-gemma2": ATTN | MLP, "builtin:tiny-gemma3": ATTN | MLP,
    "builtin:tiny-phi3": {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"},
    "builtin:tiny-deepseek-v3": {"q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj"}
    | {f"model.layers.0.mlp.{p}" for p in MLP} | {f"model.layers.1.mlp.shared_experts.{p}" for p in MLP},
    "builtin:tiny-glm4": ATTN | {"gate_up_proj", "down_proj"}, "builtin:tiny-olmo2": ATTN | MLP,
    "builtin:tiny-gpt-oss": ATTN,
}
FUSED = [f"model.layers.{i}.mlp.experts.{w}" for i in (0, 1) for w in ("down_proj", "gate_up_proj")]
PARAMS = {n: FUSED for n in ("builtin:tiny-qwen3-moe", "builtin:tiny-mixtral", "builtin:tiny-gpt-oss")}
PARAMS["builtin:tiny-deepseek-v3"] = FUSED[2:]   # block 0 is dense
# the weights LLaMA Pro zeroes in a new block (derived by llama_pro.residual_writers; here written out to check it)
WRITERS = {name: ["mlp.down_proj.weight", "self_attn.o_proj.weight"] for name in TARGETS}
WRITERS.update({n: ["mlp.experts.down_proj", "self_attn.o_proj.weight"]
                for n in ("builtin:tiny-qwen3-moe", "builtin:tiny-mixtral", "builtin:tiny-gpt-oss")})
WRITERS["builtin:tiny-deepseek-v3"] = ["mlp.experts.down_proj", "mlp.shared_experts.down_proj.weight",
                                       "self_attn.o_proj.weight"]   # block 1: routed and shared experts
MOE = ("builtin:tiny-qwen3-moe", "builtin:tiny-mixtral", "builtin:tiny-gpt-oss")


def test_zoo_names_are_the_configs_builtin_models():
    from llmpipe.config.families.model import BUILTIN_MODELS, ZOO_MODELS

    assert set(zoo.names()) == set(ZOO_MODELS) and set(ZOO_MODELS) <= set(BUILTIN_MODELS)


def loss(model, x=X) -> float:
    model.eval()
    with torch.no_grad():
        return model(input_ids=x, labels=x).loss.item()


def logits(model, x=X):
    model.eval()
    with torch.no_grad():
        return model(input_ids=x, use_cache=False).logits.float()


def train(model, steps: int, lr: float):
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    for _ in range(steps):
        model(input_ids=X, labels=X).loss.backward()
        opt.step()
        opt.zero_grad()
    return model


def trainable_names(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("name", zoo.names())
def test_lora_all_freeze_llama_pro_and_full(name):
    from peft import get_peft_model

    from llmpipe.models import llama_pro
    from llmpipe.models.adapters import AdapterError, lora_config
    from llmpipe.models.freeze import apply_freeze

    # LoRA target=all: exactly the linear layers of the blocks, in every block
    model = zoo.build_model(name)
    assert type(model).__name__.endswith("ForCausalLM") and model.config.num_hidden_layers == 2
    lc = lora_config(cfg_of("lora.rank=4"), model)
    assert set(lc.target_modules) == TARGETS[name] and sorted(lc.target_parameters or []) == PARAMS.get(name, [])
    if name in PARAMS:   # PEFT's parameter LoRA has no dropout: refused, not trained without the experts
        with pytest.raises(AdapterError, match="lora.dropout set"):
            lora_config(cfg_of("lora.rank=4", "lora.dropout=0.1"), model)
    peft = get_peft_model(model, lc)
    adapted = {n.rsplit(".", 1)[0].removeprefix("base_model.model.") for n, _ in peft.named_modules()
               if n.endswith(".lora_A") and ".base_layer." not in n}
    adapted = {n.removesuffix(".base_layer") for n in adapted}   # a second fused weight nests in the first's wrapper
    linear = {n for n, m in zoo.build_model(name).named_modules() if isinstance(m, torch.nn.Linear) and n != "lm_head"}
    experts = {p.rsplit(".", 1)[0] for p in PARAMS.get(name, []) if ".experts." in p}
    assert adapted == linear | experts, adapted ^ (linear | experts)
    # the fused experts' LoRA trains: both fused weights' lora_B get a gradient (lora_A's is zero while B is zero)
    peft(input_ids=X, labels=X).loss.backward()
    grads = {n for n, p in peft.named_parameters() if "lora_" in n and p.grad is not None and p.grad.abs().sum() > 0}
    assert all(sum(f".{e}." in g and "lora_B" in g for g in grads) == 2 for e in experts), grads
    assert {n.split(".layers.")[1].split(".")[0] for n in adapted} == {"0", "1"}

    # freeze: the last block, or the first
    for n, block in ((1, "1"), (-1, "0")):
        model = zoo.build_model(name)
        apply_freeze(model, cfg_of("train.finetuning_type=freeze", f"freeze.trainable_layers={n}"))
        names = trainable_names(model)
        assert names == {p for p, _ in model.named_parameters() if p.startswith(f"model.layers.{block}.")}, names

    # LLaMA Pro: two identity blocks, found on the model; training them lowers the loss
    model = zoo.build_model(name)
    before, base_loss = logits(model), loss(model)
    cfg = cfg_of("train.finetuning_type=freeze", "freeze.use_llama_pro=true", "freeze.trainable_layers=2")
    assert llama_pro.residual_writers(model, 1, X[:1]) == WRITERS[name]
    ids = llama_pro.prepare(model, cfg, log=lambda s: None)
    assert ids == [1, 3] and len(model.model.layers) == 4 and model.config.num_hidden_layers == 4
    assert torch.allclose(logits(model), before, atol=1e-5)
    apply_freeze(model, cfg, ids)
    assert {n.split(".")[2] for n in trainable_names(model)} == {"1", "3"}
    assert loss(train(model, 6, 1e-2)) < base_loss - 0.05
    assert model.generate(X[:1, :4], max_new_tokens=3, do_sample=False, min_new_tokens=3).shape == (1, 7)

    # full fine-tuning: every parameter trains and the loss falls
    model = zoo.build_model(name)
    base_loss = loss(model)
    assert loss(train(model, 6, 1e-2)) < base_loss - 0.5


@pytest.mark.parametrize("name", zoo.names())
def test_hqq_qlora_one_step(name):
    """QLoRA with HQQ (4-bit, on the CPU) per architecture, the way the pipeline does it: the LoRA config is made on
    the unquantized model (adapt stage) and put on the HQQ-quantized one (train stage). Every linear layer of the
    blocks is an HQQ layer under LoRA, the fused experts keep their parameter LoRA, and one step lowers the loss."""
    pytest.importorskip("hqq")
    from peft import get_peft_model

    from llmpipe.models.adapters import lora_config
    from llmpipe.models.quantization import quantize_loaded

    lc = lora_config(cfg_of("lora.rank=4"), zoo.build_model(name))
    peft = get_peft_model(quantize_loaded(zoo.build_model(name), cfg_of("quantization=hqq4"), torch.float32), lc)
    linear = {n for n, m in zoo.build_model(name).named_modules() if isinstance(m, torch.nn.Linear) and n != "lm_head"}
    bases = {n: type(peft.get_submodule(f"base_model.model.{n}").get_base_layer()).__name__ for n in linear}
    assert set(bases.values()) == {"HQQLinear"}, bases
    experts = {p.rsplit(".", 1)[0] for p in PARAMS.get(name, []) if ".experts." in p}
    assert all(type(peft.get_submodule(f"base_model.model.{e}")).__name__ == "ParamWrapper" for e in experts)
    opt = torch.optim.AdamW([p for p in peft.parameters() if p.requires_grad], lr=1e-2)
    first = peft(input_ids=X, labels=X).loss
    first.backward()
    opt.step()
    with torch.no_grad():
        assert peft(input_ids=X, labels=X).loss.item() < first.item()


def test_lora_target_all_on_an_hqq_quantized_model_finds_its_hqq_layers():
    """lora.target=all made on a model already quantized by HQQ (whose layers replace nn.Linear without subclassing
    it) names the same linear layers as on the unquantized model, instead of none (PEFT: no matching module)."""
    pytest.importorskip("hqq")
    from llmpipe.models.adapters import linear_module_names
    from llmpipe.models.quantization import quantize_loaded

    plain = linear_module_names(zoo.build_model("builtin:tiny-llama3"))
    hqq = quantize_loaded(zoo.build_model("builtin:tiny-llama3"), cfg_of("quantization=hqq4"), torch.float32)
    assert plain and linear_module_names(hqq) == plain


@pytest.mark.parametrize("name", MOE)
def test_moe_aux_loss_coefficient_acts(name, tmp_path):
    from llmpipe.models.loading import load_causal_lm

    zoo.build_into(name, tmp_path)
    losses = {}
    for coef in (0.0, 1.0):
        m = load_causal_lm(str(tmp_path), cfg_of(f"model.moe_aux_loss_coef={coef}"), training=True, log=lambda s: None)
        assert m.config.router_aux_loss_coef == coef and m.config.output_router_logits
        out = m(input_ids=X, labels=X)
        losses[coef] = out.loss.item()
        aux = out.aux_loss.item()
    assert losses[1.0] == pytest.approx(losses[0.0] + aux, rel=1e-5) and aux > 0
    default = load_causal_lm(str(tmp_path), cfg_of(), training=True, log=lambda s: None)
    assert default.config.output_router_logits   # the model's own coefficient acts while training too


@pytest.mark.parametrize("name", ["builtin:tiny-deepseek-v3", "builtin:tiny-qwen3-moe", "builtin:tiny-mixtral"])
def test_moe_aux_loss_coef_is_refused_where_it_cannot_act(name):
    """DeepSeek-V3 routes without an auxiliary loss (bias-based balancing): a coefficient could not act, so
    pre-flight refuses it; the models with a router loss accept it."""
    from llmpipe.config.compose import compose
    from llmpipe.pipeline.preflight import validate

    _, problems = validate(compose(["model=tiny", f"model.name_or_path={name}", "model.moe_aux_loss_coef=0.01",
                                    "data.dataset=demo_sft"]))
    refused = [p for p in problems if p.key == "model.moe_aux_loss_coef"]
    if name == "builtin:tiny-deepseek-v3":
        assert refused and "without an auxiliary loss" in refused[0].message, [p.render() for p in problems]
    else:
        assert not refused, [p.render() for p in refused]


@pytest.mark.parametrize("name", ["builtin:tiny-phi3", "builtin:tiny-deepseek-v3"])
def test_freeze_extra_modules_error_lists_the_modules_outside_the_blocks(name):
    from llmpipe.models.freeze import FreezeError, apply_freeze

    model = zoo.build_model(name)
    with pytest.raises(FreezeError) as err:
        apply_freeze(model, cfg_of("train.finetuning_type=freeze", "freeze.extra_modules=nothere"))
    offered = str(err.value).split("choose from: ")[1].split(", ")
    assert {"embed_tokens", "norm", "lm_head"} <= set(offered) and "o_proj" not in offered and "layers" not in offered


def test_zoo_builds_are_deterministic_and_load_as_built_in_models(tmp_path):
    """Two builds give byte-identical weights and tokenizer; ensure() builds once per content hash, and the
    folder loads through llmpipe's loader with builtin:tiny-random's tokenizer."""
    from llmpipe.models import tiny
    from llmpipe.models.loading import load_tokenizer, resolve_source

    name = "builtin:tiny-qwen3-moe"
    a, b = zoo.build_into(name, tmp_path / "a"), zoo.build_into(name, tmp_path / "b")
    for f in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    folder = zoo.ensure(name, tmp_path / "cache")
    assert folder.name == zoo.folder_name(name) and (folder / tiny.COMPLETE).is_file()
    assert zoo.ensure(name, tmp_path / "cache") == folder
    assert resolve_source(name, tmp_path / "cache") == str(folder)   # model.name_or_path=builtin:tiny-qwen3-moe
    tok = load_tokenizer(str(folder), cfg_of().model)
    text = "<|im_start|>user\nHello 七加七<|im_end|>\n"
    assert tok(text)["input_ids"] == tiny.build_tokenizer("builtin:tiny-random")(text)["input_ids"]
