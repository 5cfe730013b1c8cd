"""Inference rules: vLLM/SGLang need a GPU and their package, vLLM's own limits, and generation settings that
could not act as written (greedy decoding with sampling knobs, unreachable lengths, penalties without beams)."""
from __future__ import annotations

import json

from llmpipe.config.flags import flag_table
from llmpipe.config.rulebook import rule
from llmpipe.config.rules._common import adapters, fmt, ft_type, get, problem, quant_bit, stage, trains

PACKAGES = {"vllm": ("vllm", "pip install vllm"), "sglang": ("sglang", "pip install 'sglang>=0.4.5'")}


@rule("infer-backend-gpu", keys=["infer.backend"],
      bad=[["infer=vllm"], ["infer.backend=sglang"]], good=[["infer.backend=huggingface"]], env={"gpu_count": 0})
def backend_gpu(cfg, env):
    """vLLM and SGLang serve from CUDA GPUs only."""
    be = get(cfg, "infer.backend", "huggingface")
    if be in PACKAGES and not env.cuda:
        yield problem("infer-backend-gpu", "infer.backend", be, f"{be} runs only on a CUDA GPU and this machine has none",
                      "huggingface (runs on CPU)", "infer.backend=huggingface")


@rule("infer-backend-package", keys=["infer.backend"],
      bad=[["infer=vllm"], ["infer.backend=sglang"]], good=[["infer.backend=huggingface"]],
      env={"gpu_count": 1, "missing_packages": frozenset({"vllm", "sglang"})})
def backend_package(cfg, env):
    """The chosen inference engine must be installed."""
    be = get(cfg, "infer.backend", "huggingface")
    if be in PACKAGES and not env.has(PACKAGES[be][0]):
        yield problem("infer-backend-package", "infer.backend", be, f"the Python module {PACKAGES[be][0]} is not installed",
                      "huggingface, or an installed engine", f"{PACKAGES[be][1]}, or infer.backend=huggingface")


@rule("infer-vllm-limits", keys=["infer.backend", "quantization.bit", "model.rope_scaling", "model.adapter_name_or_path",
                                 "train.stage"],
      bad=[["infer=vllm", "quantization=bnb4"], ["infer=vllm", "model.rope_scaling=linear"],
           ["infer=vllm", "model.adapter_name_or_path='llmpipe-test/a,llmpipe-test/b'"],
           ["infer=vllm", "train.stage=rm", "data.dataset=demo_pref"]],
      good=[["infer=vllm"], ["infer=vllm", "model.adapter_name_or_path=llmpipe-test/a"], ["quantization=bnb4"]],
      env={"gpu_count": 1, "available_packages": frozenset({"vllm", "bitsandbytes"})})
def vllm_limits(cfg, env):
    """vLLM serves causal LMs, without on-the-fly quantization or RoPE scaling, with a single adapter."""
    if get(cfg, "infer.backend") != "vllm":
        return
    if quant_bit(cfg) is not None:
        yield problem("infer-vllm-limits", "quantization.bit", quant_bit(cfg), "vLLM cannot quantize on the fly (bitsandbytes/hqq/eetq)",
                      "quantization=none with vLLM (it loads GPTQ/AWQ checkpoints as they are)",
                      "quantization=none, or infer.backend=huggingface")
    if get(cfg, "model.rope_scaling"):
        yield problem("infer-vllm-limits", "model.rope_scaling", get(cfg, "model.rope_scaling"),
                      "llmpipe cannot pass RoPE scaling to vLLM", "model.rope_scaling=null with vLLM",
                      "model.rope_scaling=null, or infer.backend=huggingface")
    if len(adapters(cfg)) > 1:
        yield problem("infer-vllm-limits", "model.adapter_name_or_path", get(cfg, "model.adapter_name_or_path"),
                      f"vLLM serves one adapter; {len(adapters(cfg))} were given", "a single adapter with vLLM",
                      "merge the adapters first (export), or infer.backend=huggingface")
    if stage(cfg) == "rm":
        yield problem("infer-vllm-limits", "infer.backend", "vllm", "a reward model (train.stage=rm) scores text; it does not generate",
                      "infer.backend=huggingface for reward models", "infer.backend=huggingface")


@rule("infer-vllm-config", keys=["infer.vllm_config"],
      bad=[["infer.vllm_config='{max_num_seqs: 4'"], ["infer.vllm_config='[1, 2]'"]],
      good=[["infer.vllm_config='{\"max_num_seqs\": 4}'"], ["infer.vllm_config=null"]])
def vllm_config(cfg, env):
    """infer.vllm_config is a JSON object of extra vLLM engine arguments."""
    raw = get(cfg, "infer.vllm_config")
    if raw is None or not isinstance(raw, str):
        return
    try:
        value = json.loads(raw)
    except ValueError as e:
        yield problem("infer-vllm-config", "infer.vllm_config", raw, f"is not valid JSON ({e})",
                      'a JSON object, e.g. {"max_num_seqs": 4}', "infer.vllm_config='{\"max_num_seqs\": 4}'")
        return
    if not isinstance(value, dict):
        yield problem("infer-vllm-config", "infer.vllm_config", raw, "must be a JSON object (name: value pairs)",
                      'a JSON object, e.g. {"max_num_seqs": 4}', "infer.vllm_config='{\"max_num_seqs\": 4}'")


# ------------------------------------------------------------------------------------ generation settings
_SAMPLING_DEFAULTS = {"generate.temperature": 0.95, "generate.top_p": 0.7, "generate.top_k": 50}
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)   # the ranks vLLM accepts for max_lora_rank


def _beams(cfg) -> int:
    return max(int(get(cfg, "generate.num_beams", 1)), int(get(cfg, "data.eval_num_beams", 1) or 1))


@rule("generate-greedy-knobs", keys=["generate.do_sample", "generate.temperature", "generate.top_p", "generate.top_k"],
      bad=[["generate=greedy", "generate.temperature=0.3"], ["generate.do_sample=false", "generate.top_k=5"]],
      good=[["generate=greedy"], ["generate.temperature=0.3", "generate.top_k=5"]])
def greedy_knobs(cfg, env):
    """temperature, top_p and top_k only act when sampling (generate.do_sample=true)."""
    if get(cfg, "generate.do_sample", True):
        return
    for key, default in _SAMPLING_DEFAULTS.items():
        value = get(cfg, key)
        if value is not None and value != default:
            yield problem("generate-greedy-knobs", key, value, "has no effect: generate.do_sample=false decodes greedily",
                          f"{key}={default} (the default) with greedy decoding",
                          f"generate.do_sample=true to sample, or drop {key}")


@rule("generate-lengths", keys=["generate.max_new_tokens", "generate.max_length"],
      bad=[["generate.max_new_tokens=2048"], ["generate.max_length=16", "generate.max_new_tokens=64"]],
      good=[["generate.max_new_tokens=256"], ["generate.max_new_tokens=2048", "generate.max_length=4096"]])
def lengths(cfg, env):
    """Generation stops at max_new_tokens or at max_length tokens in all (prompt included): max_new_tokens must fit."""
    new, total = get(cfg, "generate.max_new_tokens", 1024), get(cfg, "generate.max_length", 1024)
    if new > total:
        yield problem("generate-lengths", "generate.max_new_tokens", new,
                      f"can never be reached: generate.max_length={total} counts the prompt and the answer",
                      f"generate.max_new_tokens <= generate.max_length ({total})",
                      f"generate.max_new_tokens={total}, or generate.max_length={new * 2}")


@rule("generate-length-penalty", keys=["generate.length_penalty", "generate.num_beams", "data.eval_num_beams"],
      bad=[["generate.length_penalty=1.5"]],
      good=[["generate.length_penalty=1.5", "generate.num_beams=4"], ["generate.length_penalty=1.0"]])
def length_penalty(cfg, env):
    """length_penalty only acts on beam search (generate.num_beams > 1 or data.eval_num_beams > 1)."""
    value = get(cfg, "generate.length_penalty", 1.0)
    if value != 1.0 and _beams(cfg) == 1:
        yield problem("generate-length-penalty", "generate.length_penalty", value,
                      "has no effect without beam search (generate.num_beams=1)", "1.0 without beam search",
                      "generate.num_beams=4 (beam search), or drop generate.length_penalty")


@rule("generate-eval-beams", keys=["data.eval_num_beams", "train.do_predict"],
      bad=[["data.eval_num_beams=4"]],
      good=[["data.eval_num_beams=4", "train.do_predict=true", "train.predict_with_generate=true",
             "data.eval_dataset=demo_sft_eval"], ["data.eval_num_beams=null"]])
def eval_beams(cfg, env):
    """data.eval_num_beams sets the beams of the predict stage (train.do_predict)."""
    beams = get(cfg, "data.eval_num_beams")
    if beams is not None and not get(cfg, "train.do_predict"):
        yield problem("generate-eval-beams", "data.eval_num_beams", beams, "has no effect: nothing predicts",
                      "data.eval_num_beams with train.do_predict=true", "train.do_predict=true, or drop data.eval_num_beams")


@rule("infer-predict-stage", keys=["train.do_predict", "train.do_eval", "train.do_train", "train.stage"],
      bad=[["train.stage=pt", "data.dataset=demo_pt", "train.do_predict=true", "data.eval_dataset=demo_pt_eval"],
           ["train.stage=dpo", "data.dataset=demo_pref", "train.do_eval=true", "data.eval_dataset=demo_pref_eval"]],
      good=[["train.do_predict=true", "train.predict_with_generate=true", "data.eval_dataset=demo_sft_eval"],
            ["train.stage=dpo", "data.dataset=demo_pref", "train.do_train=true", "train.do_eval=true",
             "data.eval_dataset=demo_pref_eval"]])
def predict_stage(cfg, env):
    """predict generates for sft data; the evaluate stage scores pt/sft data (other stages evaluate while training)."""
    st = stage(cfg)
    if get(cfg, "train.do_predict") and st != "sft":
        yield problem("infer-predict-stage", "train.do_predict", True,
                      f"the predict stage generates answers for sft data, not train.stage={st}",
                      "train.do_predict=true with train.stage=sft",
                      "drop train.do_predict, or predict in a separate train.stage=sft run")
    if get(cfg, "train.do_eval") and st not in ("pt", "sft") and not get(cfg, "train.do_train"):
        yield problem("infer-predict-stage", "train.do_eval", True,
                      f"train.stage={st} is evaluated while training; without train.do_train nothing evaluates",
                      "train.do_eval=true with train.stage=pt or sft, or with training",
                      "train.do_train=true, or train.stage=sft train.do_eval=true")


@rule("infer-sglang", keys=["infer.backend"], bad=[["infer.backend=sglang"]], good=[["infer.backend=huggingface"]],
      env={"gpu_count": 1, "available_packages": frozenset({"sglang"})})
def sglang(cfg, env):
    """llmpipe drives the huggingface and vllm engines; SGLang serves an exported model on its own."""
    if get(cfg, "infer.backend") == "sglang":
        yield problem("infer-sglang", "infer.backend", "sglang", "llmpipe has no SGLang engine (only huggingface and vllm)",
                      "huggingface, vllm",
                      "infer.backend=vllm; or export (export.dir=out) and run python -m sglang.launch_server "
                      "--model-path out")


SGLANG_KEYS = ("infer.sglang_maxlen", "infer.sglang_mem_fraction", "infer.sglang_tp_size")


@rule("infer-sglang-settings", keys=list(SGLANG_KEYS),
      bad=[["infer.sglang_maxlen=2048"], ["infer.sglang_mem_fraction=0.5"], ["infer=vllm", "infer.sglang_tp_size=2"]],
      good=[["infer.backend=huggingface"], ["infer=vllm"]],
      env={"gpu_count": 1, "available_packages": frozenset({"vllm", "sglang"})})
def sglang_settings(cfg, env):
    """The infer.sglang_* settings configure an SGLang engine, and llmpipe has none (rule infer-sglang): a value
    other than the default could never act, so it is refused rather than silently ignored."""
    for key in SGLANG_KEYS:
        value, default = get(cfg, key), flag_table().default(key)
        if value is not None and value != default:
            yield problem("infer-sglang-settings", key, value,
                          "applies only to infer.backend=sglang, which llmpipe does not run (it drives the huggingface "
                          "and vllm engines; SGLang serves an exported model on its own)", f"{default} (the default)",
                          f"drop {key}; for SGLang: export (export.dir=out) and pass the setting to "
                          "python -m sglang.launch_server --model-path out")


_VLLM_ENV = {"gpu_count": 1, "available_packages": frozenset({"vllm"})}


@rule("infer-vllm-generation", keys=["infer.backend", "generate.num_beams", "data.eval_num_beams",
                                     "generate.max_new_tokens", "infer.vllm_maxlen", "infer.use_kv_cache"],
      bad=[["infer=vllm", "generate.num_beams=4"], ["infer=vllm", "infer.vllm_maxlen=512"],
           ["infer=vllm", "infer.use_kv_cache=false"]],
      good=[["infer=vllm"], ["infer=vllm", "infer.vllm_maxlen=512", "generate.max_new_tokens=256"],
            ["generate.num_beams=4"]], env=_VLLM_ENV)
def vllm_generation(cfg, env):
    """With vLLM: no beam search, max_new_tokens leaves room for a prompt within vllm_maxlen, KV cache always on."""
    if get(cfg, "infer.backend") != "vllm":
        return
    if _beams(cfg) > 1:
        yield problem("infer-vllm-generation", "generate.num_beams", _beams(cfg), "llmpipe does no beam search on vLLM",
                      "generate.num_beams=1 and data.eval_num_beams=null with vLLM",
                      "generate.num_beams=1, or infer.backend=huggingface")
    new, maxlen = get(cfg, "generate.max_new_tokens", 1024), get(cfg, "infer.vllm_maxlen", 4096)
    if new >= maxlen:
        yield problem("infer-vllm-generation", "generate.max_new_tokens", new,
                      f"leaves no room for a prompt within infer.vllm_maxlen={maxlen}",
                      f"generate.max_new_tokens < infer.vllm_maxlen ({maxlen})",
                      f"generate.max_new_tokens={maxlen // 2}, or infer.vllm_maxlen={new * 2}")
    if not get(cfg, "infer.use_kv_cache", True):
        yield problem("infer-vllm-generation", "infer.use_kv_cache", False, "vLLM always uses its (paged) KV cache",
                      "infer.use_kv_cache=true with vLLM", "infer.use_kv_cache=true, or infer.backend=huggingface")


@rule("infer-vllm-lora-rank", keys=["infer.backend", "infer.vllm_max_lora_rank", "lora.rank"],
      bad=[["infer=vllm", "infer.vllm_max_lora_rank=12"],
           ["infer=vllm", "train.do_train=true", "lora.rank=64"]],
      good=[["infer=vllm", "infer.vllm_max_lora_rank=64", "train.do_train=true", "lora.rank=64"],
            ["infer.vllm_max_lora_rank=12"]], env=_VLLM_ENV)
def vllm_lora_rank(cfg, env):
    """vLLM serves LoRA ranks up to infer.vllm_max_lora_rank, which must be one of the sizes vLLM supports."""
    if get(cfg, "infer.backend") != "vllm":
        return
    cap = get(cfg, "infer.vllm_max_lora_rank", 32)
    if cap not in VLLM_LORA_RANKS:
        yield problem("infer-vllm-lora-rank", "infer.vllm_max_lora_rank", cap, "is not a rank vLLM supports",
                      fmt(VLLM_LORA_RANKS), f"infer.vllm_max_lora_rank={min(r for r in VLLM_LORA_RANKS if r >= cap)}"
                      if cap < 512 else "infer.vllm_max_lora_rank=512")
    rank = get(cfg, "lora.rank", 8)
    if trains(cfg) and ft_type(cfg) == "lora" and rank > cap:
        yield problem("infer-vllm-lora-rank", "lora.rank", rank,
                      f"the trained adapter could not be served: infer.vllm_max_lora_rank={cap}",
                      f"lora.rank <= infer.vllm_max_lora_rank ({cap})",
                      f"infer.vllm_max_lora_rank={min([r for r in VLLM_LORA_RANKS if r >= rank] or [512])}")
