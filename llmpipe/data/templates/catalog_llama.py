"""Llama, Mistral, Gemma, DeepSeek, Phi and Vicuna/LLaVA-style templates.

Facts of LLaMA-Factory's templates of the same names (what the slots mean: llmpipe.data.templates.spec).
Templates that share their slots share a base (the ``**_NAME`` dicts); each entry adds what is its own.
"""
from __future__ import annotations

from llmpipe.data.templates.spec import TemplateSpec

_S0 = "{{content}}\n\n"
_S1 = "<start_of_turn>user\n{{content}}<end_of_turn>\n<start_of_turn>model\n"
_S2 = "{{content}}<end_of_turn>\n"
_S3 = "<start_of_turn>tool\n{{content}}<end_of_turn>\n<start_of_turn>model\n"
_S4 = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
    "helpful, detailed, and polite answers to the user's questions."
)
_S5 = "USER: {{content}} ASSISTANT:"
_S6 = "[INST]{{content}}[/INST]"
_S7 = "[TOOL_RESULTS]{\"content\": {{content}}}[/TOOL_RESULTS]"
_S8 = "[TOOL_CALLS]{{content}}{{eos}}"
_S9 = "<|start_header_id|>system<|end_header_id|>\n\n{{content}}<|eot_id|>"
_S10 = (
    "<|start_header_id|>user<|end_header_id|>\n\n"
    "{{content}}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
)
_S11 = "{{content}}<|eot_id|>"
_S12 = (
    "<|start_header_id|>ipython<|end_header_id|>\n\n"
    "{{content}}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
)
_S13 = "[INST] {{content}}[/INST]"
_S14 = " {{content}}{{eos}}"
_S15 = "[TOOL_RESULTS] {\"content\": {{content}}}[/TOOL_RESULTS]"
_S16 = "[TOOL_CALLS] {{content}}{{eos}}"
_DEEPSEEKCODER_DEFAULT_SYSTEM = (
    "You are an AI programming assistant, utilizing the DeepSeek Coder model, developed by DeepSeek "
    "Company, and you only answer questions related to computer science. For politically sensitive "
    "questions, security and privacy issues, and other non-computer science questions, you will refuse "
    "to answer.\n"
)
_LLAMA4_USER = (
    "<|header_start|>user<|header_end|>\n\n{{content}}<|eot|><|header_start|>assistant<|header_end|>\n"
    "\n"
)
_LLAMA4_OBSERVATION = (
    "<|header_start|>ipython<|header_end|>\n\n"
    "{{content}}<|eot|><|header_start|>assistant<|header_end|>\n\n"
)
_OPENCHAT_3_6_USER = (
    "<|start_header_id|>GPT4 Correct User<|end_header_id|>\n\n"
    "{{content}}<|eot_id|><|start_header_id|>GPT4 Correct Assistant<|end_header_id|>\n\n"
)
_YI_VL_DEFAULT_SYSTEM = (
    "This is a chat between an inquisitive human and an AI assistant. Assume the role of the AI "
    "assistant. Read all the images carefully, and respond to the human's questions with informative, "
    "helpful, detailed and polite answers. "
    "这是一个好奇的人类和一个人工智能助手之间的对话。假设你扮演这个AI助手的角色。仔细阅读所有的图像，并对人类的问题做出信息丰富、有帮助、详细的和礼貌的回答。\n\n"
)
_GEMMA_0 = {
    "prefix": "{{bos}}", "system": _S0, "user": _S1, "assistant": _S2, "observation": _S3,
    "stop_words": ("<end_of_turn>",), "replace_eos": True, "system_in_first_user": True,
}
_LLAMA_0 = {
    "prefix": "{{bos}}", "system": _S9, "user": _S10, "assistant": _S11, "observation": _S12,
    "stop_words": ("<|eot_id|>", "<|eom_id|>"), "replace_eos": True, "tool_format": "llama3",
}
_VICUNA_LLAVA_0 = {"user": _S5, "default_system": _S4}
_MISTRAL_0 = {
    "prefix": "{{bos}}", "system": _S0, "user": _S13, "assistant": _S14, "observation": _S15, "function": _S16,
    "system_in_first_user": True, "tool_format": "mistral",
}
_MISTRAL_1 = {
    "prefix": "{{bos}}", "system": _S0, "user": _S6, "observation": _S7, "function": _S8,
    "system_in_first_user": True, "tool_format": "mistral",
}

SPECS = (
    TemplateSpec("breeze", "mistral", prefix="{{bos}}", user="[INST] {{content}} [/INST] ", efficient_eos=True),
    TemplateSpec("deepseek", "deepseek", prefix="{{bos}}", system=_S0, user="User: {{content}}\n\nAssistant:"),
    TemplateSpec("deepseek3", "deepseek", prefix="{{bos}}", user="<｜User｜>{{content}}<｜Assistant｜>"),
    TemplateSpec("deepseekcoder", "deepseek", prefix="{{bos}}", user="### Instruction:\n{{content}}\n### Response:",
                 assistant="\n{{content}}\n<|EOT|>\n", default_system=_DEEPSEEKCODER_DEFAULT_SYSTEM),
    TemplateSpec("deepseekr1", "deepseek", prefix="{{bos}}", user="<｜User｜>{{content}}<｜Assistant｜>",
                 thought_words=("<think>\n", "\n</think>\n\n")),
    TemplateSpec("gemma", "gemma", **_GEMMA_0),
    TemplateSpec("gemma2", "gemma", prefix="{{bos}}", system=_S0, user=_S1, assistant=_S2, observation=_S3,
                 stop_words=("<eos>", "<end_of_turn>"), efficient_eos=True, system_in_first_user=True),
    TemplateSpec("gemma3", "gemma", **_GEMMA_0, mm_plugin="gemma3"),
    TemplateSpec("gemma3n", "gemma", **_GEMMA_0, mm_plugin="gemma3n"),
    TemplateSpec("gemma4", "gemma", prefix="{{bos}}", system="<|turn>system\n<|think|>{{content}}<turn|>\n",
                 user="<|turn>user\n{{content}}<turn|>\n<|turn>model\n", assistant="{{content}}<turn|>\n",
                 observation="<|turn>tool\n{{content}}<turn|>\n<|turn>model\n", function="<|tool>{{content}}<tool|>",
                 default_system="You are a helpful assistant.", stop_words=("<turn|>",), replace_eos=True,
                 thought_words=("<|channel>thought\n", "<channel|>"), tool_format="gemma4", mm_plugin="gemma4"),
    TemplateSpec("gemma4n", "gemma", prefix="{{bos}}", system="<|turn>system\n<|think|>{{content}}<turn|>\n",
                 user="<|turn>user\n{{content}}<turn|>\n<|turn>model\n", assistant="{{content}}<turn|>\n",
                 observation="<|turn>tool\n{{content}}<turn|>\n<|turn>model\n", function="<|tool>{{content}}<tool|>",
                 default_system="You are a helpful assistant.", stop_words=("<turn|>",), replace_eos=True,
                 thought_words=("<|channel>thought\n", "<channel|>"), tool_format="gemma4", mm_plugin="gemma4"),
    TemplateSpec("granite3_vision", "vicuna/llava", system="<|system|>\n{{content}}\n",
                 user="<|user|>\n{{content}}\n<|assistant|>\n", default_system=_S4, mm_plugin="llava_next"),
    TemplateSpec("llama2", "llama", system="<<SYS>>\n{{content}}\n<</SYS>>\n\n",
                 user="{{bos}}[INST] {{content}} [/INST]", system_in_first_user=True),
    TemplateSpec("llama2_zh", "llama", system="<<SYS>>\n{{content}}\n<</SYS>>\n\n",
                 user="{{bos}}[INST] {{content}} [/INST]", default_system="You are a helpful assistant. 你是一个乐于助人的助手。",
                 system_in_first_user=True),
    TemplateSpec("llama3", "llama", **_LLAMA_0),
    TemplateSpec("llama4", "llama", prefix="{{bos}}",
                 system="<|header_start|>system<|header_end|>\n\n{{content}}<|eot|>", user=_LLAMA4_USER,
                 assistant="{{content}}<|eot|>", observation=_LLAMA4_OBSERVATION, stop_words=("<|eot|>", "<|eom|>"),
                 replace_eos=True, tool_format="llama3", mm_plugin="llama4"),
    TemplateSpec("llava", "vicuna/llava", **_VICUNA_LLAVA_0, mm_plugin="llava"),
    TemplateSpec("llava_next", "vicuna/llava", **_VICUNA_LLAVA_0, mm_plugin="llava_next"),
    TemplateSpec("llava_next_llama3", "llama", **_LLAMA_0, mm_plugin="llava_next"),
    TemplateSpec("llava_next_mistral", "mistral", **_MISTRAL_0, mm_plugin="llava_next"),
    TemplateSpec("llava_next_video", "vicuna/llava", **_VICUNA_LLAVA_0, mm_plugin="llava_next_video"),
    TemplateSpec("llava_next_video_mistral", "mistral", **_MISTRAL_0, mm_plugin="llava_next_video"),
    TemplateSpec("ministral", "mistral", **_MISTRAL_1),
    TemplateSpec("ministral3", "mistral", **_MISTRAL_1, mm_plugin="pixtral"),
    TemplateSpec("mistral", "mistral", **_MISTRAL_0),
    TemplateSpec("mistral_small", "mistral", prefix="{{bos}}", system="[SYSTEM_PROMPT]{{content}}[/SYSTEM_PROMPT]",
                 user=_S6, observation=_S7, function=_S8, tool_format="mistral", mm_plugin="pixtral"),
    TemplateSpec("mllama", "llama", **_LLAMA_0, mm_plugin="mllama"),
    TemplateSpec("openchat-3.6", "llama", prefix="{{bos}}", user=_OPENCHAT_3_6_USER, stop_words=("<|eot_id|>",)),
    TemplateSpec("paligemma", "gemma", prefix="{{bos}}", user="{{content}}\n", system_in_first_user=True,
                 mm_plugin="paligemma"),
    TemplateSpec("paligemma_chat", "gemma", prefix="{{bos}}", user=_S1, assistant=_S2, observation=_S3,
                 stop_words=("<end_of_turn>",), replace_eos=True, system_in_first_user=True, mm_plugin="paligemma"),
    TemplateSpec("phi", "phi", system="<|system|>\n{{content}}<|end|>\n",
                 user="<|user|>\n{{content}}<|end|>\n<|assistant|>\n", assistant="{{content}}<|end|>\n",
                 stop_words=("<|end|>",), replace_eos=True),
    TemplateSpec("phi4", "phi", system="<|im_start|>system<|im_sep|>{{content}}<|im_end|>",
                 user="<|im_start|>user<|im_sep|>{{content}}<|im_end|><|im_start|>assistant<|im_sep|>",
                 assistant="{{content}}<|im_end|>", stop_words=("<|im_end|>",), replace_eos=True),
    TemplateSpec("phi4_mini", "phi", system="<|system|>{{content}}<|end|>",
                 user="<|user|>{{content}}<|end|><|assistant|>", assistant="{{content}}<|end|>",
                 stop_words=("<|end|>",), replace_eos=True, tool_format=None),
    TemplateSpec("phi_small", "phi", system="<|system|>\n{{content}}<|end|>\n",
                 user="<|user|>\n{{content}}<|end|>\n<|assistant|>\n", assistant="{{content}}<|end|>\n",
                 stop_words=("<|end|>",), replace_eos=True),
    TemplateSpec("pixtral", "mistral", **_MISTRAL_1, mm_plugin="pixtral"),
    TemplateSpec("video_llava", "vicuna/llava", **_VICUNA_LLAVA_0, mm_plugin="video_llava"),
    TemplateSpec("yi_vl", "vicuna/llava", user="### Human: {{content}}\n### Assistant:", assistant="{{content}}\n",
                 default_system=_YI_VL_DEFAULT_SYSTEM, stop_words=("###",), efficient_eos=True, mm_plugin="llava"),
)
