"""Pre-flight rule of exporting a vision-language model: GPTQ (export.quantization_bit) is refused for one.

GPTQ in llmpipe (llmpipe.exporting.gptq) goes through transformers' GPTQConfig, which calibrates the decoder
blocks it finds on text windows; for a vision-language model it would have to quantize the language model only and
leave the vision tower and the projector in full precision, and the reload would have to rebuild the same split.
That path is not built, so the combination stops before anything runs, naming the model and what to do instead:
export the merged model unquantized, or quantize at inference (quantization.bit). Registered by
llmpipe.pipeline.preflight. No torch."""
from __future__ import annotations

from llmpipe.config.rulebook import rule
from llmpipe.config.rules._common import get, problem
from llmpipe.models.vision_rules import model_family

_VLM_GPTQ = ["model.name_or_path=builtin:tiny_vl", "export.dir=/tmp/llmpipe-export", "export.quantization_bit=4",
             "export.quantization_dataset=demo_pt"]


@rule("export-quant-vlm", keys=["export.quantization_bit", "model.name_or_path"],
      bad=[_VLM_GPTQ], good=[_VLM_GPTQ[:2], ["export.dir=/tmp/llmpipe-export", "export.quantization_bit=4",
                                              "export.quantization_dataset=demo_pt"]],
      env={"available_packages": frozenset({"gptqmodel", "optimum"})})
def quant_vlm(cfg, env):
    """GPTQ export quantizes text-only models: a vision-language model would need its language model quantized
    alone (the vision tower and projector kept), which llmpipe does not do, so it is refused, never half done."""
    family, vlm = model_family(cfg)
    bit = get(cfg, "export.quantization_bit")
    if bit is None or vlm is not True:
        return
    yield problem("export-quant-vlm", "export.quantization_bit", bit,
                  f"GPTQ export of the vision-language model {get(cfg, 'model.name_or_path')} ({family}) is not "
                  "supported: llmpipe's GPTQ path quantizes text-only causal LMs, and would have to quantize the "
                  "language model alone, leaving the vision tower and projector in full precision",
                  "null for a vision-language model",
                  "export.quantization_bit=null (export the merged model unquantized), or quantize when serving "
                  "with quantization.bit=4 or 8")
