"""ChatML and Qwen-style templates (<|im_start|>role ... <|im_end|>).

Facts of LLaMA-Factory's templates of the same names (what the slots mean: llmpipe.data.templates.spec).
Templates that share their slots share a base (the ``**_NAME`` dicts); each entry adds what is its own.
"""
from __future__ import annotations

from llmpipe.data.templates.spec import TemplateSpec

_S0 = "<|im_start|>system\n{{content}}<|im_end|>\n"
_S1 = "{{content}}<|im_end|>\n"
_S2 = "<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n"
_S3 = (
    "<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n"
    "<|im_start|>assistant\n"
)
_S4 = "You are a helpful assistant."
_S5 = "<|im_start|>tool\n{{content}}<|im_end|>\n<|im_start|>assistant\n"
_DBRX_DEFAULT_SYSTEM = (
    "You are DBRX, created by Databricks. You were last updated in December 2023. You answer questions "
    "based on information available up to that point.\nYOU PROVIDE SHORT RESPONSES TO SHORT QUESTIONS "
    "OR STATEMENTS, but provide thorough responses to more complex and open-ended questions.\nYou "
    "assist with various tasks, from writing to coding (using markdown for code blocks — remember to "
    "use ``` with code, JSON, and tables).\n(You do not have real-time data access or code execution "
    "capabilities. You avoid stereotyping and provide balanced perspectives on controversial topics. "
    "You do not provide song lyrics, poems, or news articles and do not divulge details of your "
    "training data.)\nThis is your system prompt, guiding your responses. Do not reference it, just "
    "respond to the user. If you find yourself talking about this message, stop. You should be "
    "responding appropriately and usually that means not mentioning this.\nYOU DO NOT MENTION ANY OF "
    "THIS INFORMATION ABOUT YOURSELF UNLESS THE INFORMATION IS DIRECTLY PERTINENT TO THE USER'S QUERY."
)
_INTERN2_DEFAULT_SYSTEM = (
    "You are an AI assistant whose name is InternLM (书生·浦语).\n- InternLM (书生·浦语) is a conversational "
    "language model that is developed by Shanghai AI Laboratory (上海人工智能实验室). It is designed to be "
    "helpful, honest, and harmless.\n- InternLM (书生·浦语) can understand and communicate fluently in the "
    "language chosen by the user such as English and 中文."
)
_LFM2_OBSERVATION = (
    "<|im_start|>tool\n<|tool_response_start|>{{content}}<|tool_response_end|><|im_end|>\n"
    "<|im_start|>assistant\n"
)
_MINICPM_O_DEFAULT_SYSTEM = "You are a helpful assistant. You can accept audio and text input and output voice and text."
_SAILOR_DEFAULT_SYSTEM = (
    "You are an AI assistant named Sailor created by Sea AI Lab. Your answer should be friendly, "
    "unbiased, faithful, informative and detailed."
)
_CHATML_0 = {"prefix": "{{bos}}", "system": _S0, "user": _S2, "assistant": _S1, "stop_words": ("<|im_end|>",)}
_QWEN_0 = {
    "system": _S0, "user": _S2, "assistant": _S1, "observation": _S3, "stop_words": ("<|im_end|>",),
    "replace_eos": True,
}
_CHATML_1 = {"system": _S0, "user": _S2, "assistant": _S1, "stop_words": ("<|im_end|>",)}

SPECS = (
    TemplateSpec("chatml", "chatml", system=_S0, user=_S2, assistant=_S1, observation=_S5,
                 stop_words=("<|im_end|>", "<|im_start|>"), replace_eos=True, replaces_own_template=True),
    TemplateSpec("chatml_de", "chatml", system=_S0, user=_S2, assistant=_S1, observation=_S5,
                 default_system="Du bist ein freundlicher und hilfsbereiter KI-Assistent.",
                 stop_words=("<|im_end|>", "<|im_start|>"), replace_eos=True, replaces_own_template=True),
    TemplateSpec("cpm4", "chatml", prefix="{{bos}}", system=_S0, user=_S2, assistant=_S1, observation=_S5,
                 stop_words=("<|im_end|>",)),
    TemplateSpec("dbrx", "chatml", system=_S0, user=_S2, assistant=_S1, observation=_S5,
                 default_system=_DBRX_DEFAULT_SYSTEM, stop_words=("<|im_end|>",), replace_eos=True),
    TemplateSpec("ernie", "chatml", system="<|im_start|>system\n{{content}}<|im_end|>\n\n",
                 user="<|im_start|>user\n{{content}}<|im_end|>\n\n<|im_start|>assistant\n",
                 assistant="{{content}}<|im_end|>\n\n",
                 observation="<|im_start|>tool\n{{content}}<|im_end|>\n\n<|im_start|>assistant\n",
                 default_system="<global_setting>\nthink_mode=True\n</global_setting>", stop_words=("<|im_end|>",)),
    TemplateSpec("falcon_h1", "chatml", prefix="{{bos}}", system=_S0, user=_S2, assistant=_S1, observation=_S5,
                 stop_words=("<|im_end|>", "<|end_of_text|>")),
    TemplateSpec("intern2", "chatml", **_CHATML_0, default_system=_INTERN2_DEFAULT_SYSTEM),
    TemplateSpec("intern_s1", "chatml", **_CHATML_0, mm_plugin="intern_vl"),
    TemplateSpec("intern_vl", "chatml", **_CHATML_0,
                 default_system="你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的多模态大语言模型。", mm_plugin="intern_vl"),
    TemplateSpec("keye_vl", "qwen", **_QWEN_0, thought_words=("<think>\n", "\n</think>\n\n"), tool_format="qwen",
                 mm_plugin="qwen2_vl"),
    TemplateSpec("lfm2", "chatml", system=_S0, user=_S2, assistant=_S1, observation=_LFM2_OBSERVATION,
                 default_system="You are a helpful AI assistant.", stop_words=("<|im_end|>",), replace_eos=True,
                 tool_format="lfm2"),
    TemplateSpec("lfm2_vl", "chatml", system=_S0, user=_S2, assistant=_S1, observation=_LFM2_OBSERVATION,
                 default_system="You are a helpful multimodal assistant by Liquid AI.", stop_words=("<|im_end|>",),
                 replace_eos=True, tool_format="lfm2", mm_plugin="lfm2_vl"),
    TemplateSpec("llava_next_qwen", "qwen", **_QWEN_0, default_system=_S4, tool_format="qwen", mm_plugin="llava_next"),
    TemplateSpec("llava_next_video_yi", "chatml", **_CHATML_1, mm_plugin="llava_next_video"),
    TemplateSpec("llava_next_yi", "chatml", **_CHATML_1, mm_plugin="llava_next"),
    TemplateSpec("mimo", "qwen", **_QWEN_0, default_system=_S4, thought_words=("<think>\n", "\n</think>\n\n"),
                 tool_format="qwen"),
    TemplateSpec("mimo_v2", "qwen", **_QWEN_0,
                 default_system="You are MiMo, a helpful AI assistant engineered by Xiaomi.",
                 thought_words=("<think>", "</think>"), tool_format="qwen"),
    TemplateSpec("mimo_vl", "qwen", **_QWEN_0, default_system="You are MiMo, an AI assistant developed by Xiaomi.",
                 thought_words=("<think>\n", "\n</think>\n\n"), tool_format="qwen", mm_plugin="qwen2_vl"),
    TemplateSpec("minicpm_o", "chatml", **_CHATML_1, default_system=_MINICPM_O_DEFAULT_SYSTEM, mm_plugin="minicpm_v"),
    TemplateSpec("minicpm_v", "chatml", **_CHATML_1, default_system=_S4, mm_plugin="minicpm_v"),
    TemplateSpec("minicpm_v_4_6", "chatml", **_CHATML_1, default_system=_S4, mm_plugin="minicpm_v_4_6"),
    TemplateSpec("moss_vl", "qwen", **_QWEN_0, tools_lstrip_without_system=True, tool_format="qwen",
                 mm_plugin="moss_vl"),
    TemplateSpec("opencoder", "chatml", system=_S0, user=_S2, assistant=_S1, observation=_S5,
                 default_system="You are OpenCoder, created by OpenCoder Team.", stop_words=("<|im_end|>",)),
    TemplateSpec("qwen", "qwen", **_QWEN_0,
                 default_system="You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
                 tool_format="qwen"),
    TemplateSpec("qwen2_audio", "qwen", system=_S0, user=_S2, assistant=_S1, default_system=_S4,
                 stop_words=("<|im_end|>",), replace_eos=True, mm_plugin="qwen2_audio"),
    TemplateSpec("qwen2_omni", "qwen", **_QWEN_0, default_system=_S4, tool_format="qwen", mm_plugin="qwen2_omni"),
    TemplateSpec("qwen2_vl", "qwen", **_QWEN_0, default_system=_S4, tool_format="qwen", mm_plugin="qwen2_vl"),
    TemplateSpec("qwen3", "qwen", **_QWEN_0, thought_words=("<think>\n", "\n</think>\n\n"), tool_format="qwen"),
    TemplateSpec("qwen3_5", "qwen", **_QWEN_0, thought_words=("<think>\n", "\n</think>\n\n"), tool_format="qwen3_5",
                 mm_plugin="qwen3_vl"),
    TemplateSpec("qwen3_5_nothink", "qwen", **_QWEN_0, tool_format="qwen3_5", mm_plugin="qwen3_vl"),
    TemplateSpec("qwen3_6", "qwen", **_QWEN_0, thought_words=("<think>\n", "\n</think>\n\n"), tool_format="qwen3_5",
                 mm_plugin="qwen3_vl"),
    TemplateSpec("qwen3_nothink", "qwen", **_QWEN_0, tool_format="qwen"),
    TemplateSpec("qwen3_omni", "qwen", **_QWEN_0, thought_words=("<think>\n", "\n</think>\n\n"), tool_format="qwen",
                 mm_plugin="qwen2_omni"),
    TemplateSpec("qwen3_omni_nothink", "qwen", **_QWEN_0, tool_format="qwen", mm_plugin="qwen2_omni"),
    TemplateSpec("qwen3_vl", "qwen", **_QWEN_0, thought_words=("<think>\n", "\n</think>\n\n"), tool_format="qwen",
                 mm_plugin="qwen3_vl"),
    TemplateSpec("qwen3_vl_nothink", "qwen", **_QWEN_0, tool_format="qwen", mm_plugin="qwen3_vl"),
    TemplateSpec("sailor", "chatml", system=_S0,
                 user="<|im_start|>question\n{{content}}<|im_end|>\n<|im_start|>answer\n", assistant=_S1,
                 default_system=_SAILOR_DEFAULT_SYSTEM, stop_words=("<|im_end|>",)),
    TemplateSpec("smollm", "chatml", **_CHATML_1),
    TemplateSpec("smollm2", "chatml", **_CHATML_1,
                 default_system="You are a helpful AI assistant named SmolLM, trained by Hugging Face."),
    TemplateSpec("yi", "chatml", **_CHATML_1),
)
