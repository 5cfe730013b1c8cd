"""The declarations of every stage kind: what each reads, and the function that runs it (one module per
stage, llmpipe/stages/<name>.py, whose heavy imports happen inside that function)."""
from __future__ import annotations

from llmpipe.stages import adapt, evaluate, export, load, mc_eval, merge, predict, push, quantize, reference, train
from llmpipe.stages.base import StageKind, register

# Model-loading options that change what a trained model is.
_MODEL_LOAD = ("model", "quantization")

LOAD = register(StageKind(
    name="load", version="2",
    reads=("model", "data", "train.stage", "train.seed", "train.data_seed", "vision"),
    run=load.run,
    doc="Resolve the base model and tokenizer, build the built-in model if asked, tokenize the datasets.",
))
ADAPT = register(StageKind(
    name="adapt", version="1",
    reads=("lora", "train.finetuning_type", "train.seed", "train.stage", "freeze.use_llama_pro") + _MODEL_LOAD,
    run=adapt.run,
    doc="Create the initial LoRA adapter (seeded) on the base model.",
))
REFERENCE = register(StageKind(
    name="reference", version="1",
    # what the log-probs depend on beyond the load stage (model, data, template, cutoff_len): the reference
    # model and how it is loaded, LD-DPO's weighting, the dtype. Not pref.beta/loss, lora.*, the learning rate.
    # kto adds train.per_device_train_batch_size (its KL completions rotate within each batch): pipeline/dag.
    reads=("pref.ref_model", "pref.ref_model_adapters", "pref.ref_model_quantization_bit", "pref.ld_alpha",
           "train.stage", "train.finetuning_type", "train.bf16", "train.fp16", "train.pure_bf16") + _MODEL_LOAD,
    run=reference.run,
    distributed=True,
    doc="Reference log-probs of every train/eval row of a dpo/kto step, once (batched, no grad), for the train "
        "stage; shared by sweeps over beta/loss/rank/lr and by re-runs.",
))
TRAIN = register(StageKind(
    name="train", version="2",
    reads=("train", "lora", "oft", "freeze", "galore", "apollo", "badam", "muon", "pref", "ppo", "launch.kind",
           "launch.nproc_per_node",
           "launch.nnodes", "launch.ray_num_workers", "launch.deepspeed", "launch.fsdp", "launch.fsdp_config")
    + _MODEL_LOAD,
    run=train.run,
    distributed=True,
    # whether predictions/evaluations follow does not change the trained weights (those are their own stages)
    ignores=("train.do_predict", "train.do_eval", "train.predict_with_generate"),
    doc="Train (pt/sft/rm/dpo/kto/ppo) from the loaded data and the initial adapter; checkpoints resume.",
))
MERGE = register(StageKind(
    name="merge", version="2",
    reads=("train.finetuning_type", "model.adapter_name_or_path", "model.adapter_folder", "export.device",
           "infer.dtype"),
    run=merge.run,
    doc="Merge LoRA adapters (given ones, then the trained one) into the base model; checked against the adapter model.",
))
QUANTIZE = register(StageKind(
    name="quantize", version="1",
    reads=("export.quantization_bit", "export.quantization_dataset", "export.quantization_nsamples",
           "export.quantization_maxlen", "export.device", "infer.dtype", "data.dataset_dir", "train.seed"),
    run=quantize.run,
    doc="GPTQ-quantize the model to export; perplexity on held-out text before and after, in a fresh process.",
))
EXPORT = register(StageKind(
    name="export", version="2",
    reads=("export.size", "export.legacy_format", "infer.dtype"),
    run=export.run,
    cached=False,
    doc="Write the final model into export.dir (sharded, safetensors or legacy .bin), tokenizer, model card; "
        "verified in a fresh process.",
))
PUSH = register(StageKind(
    name="push", version="1",
    reads=("export.hub_model_id", "export.push_to"),
    run=push.run,
    doc="Publish the export to the Hugging Face Hub (export.hub_model_id) and/or a git remote (export.push_to).",
))
EVALUATE = register(StageKind(
    name="evaluate", version="1",
    reads=("train.do_eval", "train.compute_accuracy", "train.per_device_eval_batch_size", "infer.dtype")
    + _MODEL_LOAD,
    run=evaluate.run,
    doc="Held-out loss, perplexity and (train.compute_accuracy) next-token accuracy of the final or base model.",
))
PREDICT = register(StageKind(
    name="predict", version="1",
    reads=("generate", "infer.backend", "infer.dtype", "infer.use_kv_cache", "infer.vllm_maxlen", "infer.vllm_config",
           "data.eval_num_beams", "train.do_predict", "train.per_device_eval_batch_size", "train.seed")
    + _MODEL_LOAD,
    run=predict.run,
    doc="Generate answers for the held-out split: predictions JSONL, BLEU-4, ROUGE-1/2/L, exact match.",
))
MC_EVAL = register(StageKind(
    name="mc_eval", version="1",
    reads=("eval", "train.seed", "infer.dtype") + _MODEL_LOAD,
    run=mc_eval.run,
    # where the results are copied and LLaMA-Factory's download mode do not change them
    ignores=("eval.save_dir", "eval.download_mode"),
    doc="Multiple-choice evaluation (eval.task: MMLU/CMMLU/C-Eval layout or the bundled mc_demo): accuracy per "
        "subject, category and overall from the logits of the choice letters.",
))
