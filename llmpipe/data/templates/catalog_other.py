"""Plain-text prompts, GLM, Tencent (Hunyuan/Youtu) and the remaining families.

Facts of LLaMA-Factory's templates of the same names (what the slots mean: llmpipe.data.templates.spec).
Templates that share their slots share a base (the ``**_NAME`` dicts); each entry adds what is its own.
"""
from __future__ import annotations

from llmpipe.data.templates.spec import TemplateSpec

_S0 = "<|system|>\n{{content}}"
_S1 = "<|user|>\n{{content}}<|assistant|>"
_S2 = "<|observation|>\n{{content}}<|assistant|>"
_S3 = "{{content}}<|end_of_text|>\n"
_AEVA_DEFAULT_SYSTEM = (
    "You are an AI assistant named Aeva created by Zongzhi Lou. Your answer should be friendly, "
    "unbiased, faithful, informative and detailed."
)
_ALPACA_DEFAULT_SYSTEM = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the "
    "request.\n\n"
)
_BAILING_V2_OBSERVATION = (
    "<role>OBSERVATION</role>\n<tool_response>\n{{content}}\n"
    "</tool_response><|role_end|><role>ASSISTANT</role>"
)
_COHERE_USER = (
    "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>{{content}}<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>"
)
_GRANITE3_USER = (
    "<|start_of_role|>user<|end_of_role|>{{content}}<|end_of_text|>\n"
    "<|start_of_role|>assistant<|end_of_role|>"
)
_GRANITE4_OBSERVATION = "<|start_of_role|>tool<|end_of_role|>{{content}}<|end_of_text|>\n<|start_of_role|>assistant\n"
_KIMI_VL_USER = "<|im_user|>user<|im_middle|>{{content}}<|im_end|><|im_assistant|>assistant<|im_middle|>"
_MINIMAX1_SYSTEM = "<beginning_of_sentence>system ai_setting=assistant\n{{content}}<end_of_sentence>\n"
_MINIMAX1_USER = (
    "<beginning_of_sentence>user name=user\n{{content}}<end_of_sentence>\n<beginning_of_sentence>ai "
    "name=assistant\n"
)
_MINIMAX1_OBSERVATION = (
    "<beginning_of_sentence>tool name=tools\n{{content}}<end_of_sentence>\n<beginning_of_sentence>ai "
    "name=assistant\n"
)
_MINIMAX2_DEFAULT_SYSTEM = "You are a helpful assistant. Your name is MiniMax-M2.1 and is built by MiniMax."
_SEED_CODER_DEFAULT_SYSTEM = (
    "You are an AI programming assistant, utilizing the Seed-Coder model, developed by ByteDance Seed, "
    "and you only answer questions related to computer science. For politically sensitive questions, "
    "security and privacy issues, and other non-computer science questions, you will refuse to "
    "answer.\n\n"
)
_VICUNA_DEFAULT_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
    "helpful, detailed, and polite answers to the user's questions."
)
_XUANYUAN_DEFAULT_SYSTEM = (
    "以下是用户和人工智能助手之间的对话。用户以Human开头，人工智能助手以Assistant开头，会对人类提出的问题给出有帮助、高质量、详细和礼貌的回答，并且总是拒绝参与与不道德、不安全、有争议、政治敏感等相关的话题、问题和指示。\n"
    ""
)
_YOUTU_VL_USER = "<|begin_of_text|>user\n{{content}}<|end_of_text|>\n<|begin_of_text|>assistant\n"
_GLM_0 = {
    "prefix": "[gMASK]<sop>", "system": _S0, "user": _S1, "assistant": "\n{{content}}", "observation": _S2,
    "function": "{{content}}", "stop_words": ("<|user|>", "<|observation|>"), "efficient_eos": True,
}

SPECS = (
    TemplateSpec("aeva", "glm", **_GLM_0, default_system=_AEVA_DEFAULT_SYSTEM, thought_words=("<think>", "</think>"),
                 empty_thought_close_only=True, tool_format="glm4_moe"),
    TemplateSpec("alpaca", "plain-text", user="### Instruction:\n{{content}}\n\n### Response:\n",
                 assistant="{{content}}{{eos}}\n\n", default_system=_ALPACA_DEFAULT_SYSTEM,
                 replaces_own_template=True),
    TemplateSpec("bailing", "other", system="<role>SYSTEM</role>{{content}}",
                 user="<role>HUMAN</role>{{content}}<role>ASSISTANT</role>",
                 observation="<role>OBSERVATION</role>{{content}}<role>ASSISTANT</role>",
                 stop_words=("<|endoftext|>",), efficient_eos=True),
    TemplateSpec("bailing_v2", "other", system="<role>SYSTEM</role>{{content}}<|role_end|>",
                 user="<role>HUMAN</role>{{content}}<|role_end|><role>ASSISTANT</role>",
                 assistant="{{content}}<|role_end|>", observation=_BAILING_V2_OBSERVATION,
                 stop_words=("<|endoftext|>",), efficient_eos=True, tool_format="ling"),
    TemplateSpec("chatglm3", "glm", prefix="[gMASK]sop", system=_S0, user=_S1, assistant="\n{{content}}",
                 observation=_S2, function="{{content}}", stop_words=("<|user|>", "<|observation|>"),
                 efficient_eos=True, tool_format="glm4",
                 tokens=("[gMASK]", "sop", "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>")),
    TemplateSpec("cohere", "other", prefix="{{bos}}",
                 system="<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>{{content}}<|END_OF_TURN_TOKEN|>", user=_COHERE_USER),
    TemplateSpec("default", "plain-text", system="System: {{content}}{{eos}}\n",
                 user="Human: {{content}}{{eos}}\nAssistant:", assistant="{{content}}{{eos}}\n",
                 replaces_own_template=True),
    TemplateSpec("dots_ocr", "other", system="<|system|>{{content}}<|endofsystem|>\n",
                 user="<|user|>{{content}}<|endofuser|><|assistant|>", assistant="{{content}}<|endofassistant|>",
                 stop_words=("<|endofassistant|>",), efficient_eos=True, mm_plugin="qwen2_vl"),
    TemplateSpec("empty", "plain-text", assistant="{{content}}"),
    TemplateSpec("ernie_nothink", "other", prefix="<|begin_of_sentence|>", system="{{content}}\n",
                 user="User: {{content}}\nAssistant: ", assistant="{{content}}<|end_of_sentence|>",
                 stop_words=("<|end_of_sentence|>",)),
    TemplateSpec("ernie_vl", "other", system="{{content}}\n", user="User: {{content}}",
                 assistant="\nAssistant: {{content}}<|end_of_sentence|>", stop_words=("<|end_of_sentence|>",),
                 replace_eos=True, thought_words=("<think>\n", "\n</think>\n\n"), mm_plugin="ernie_vl",
                 replaces_own_template=True),
    TemplateSpec("exaone", "other", system="[|system|]{{content}}[|endofturn|]\n",
                 user="[|user|]{{content}}\n[|assistant|]", assistant="{{content}}{{eos}}\n"),
    TemplateSpec("falcon", "plain-text", user="User: {{content}}\nFalcon:", assistant="{{content}}\n",
                 efficient_eos=True),
    TemplateSpec("fewshot", "plain-text", assistant="{{content}}\n\n", efficient_eos=True, replaces_own_template=True),
    TemplateSpec("glm4", "glm", **_GLM_0, tool_format="glm4"),
    TemplateSpec("glm4_5v", "glm", prefix="[gMASK]<sop>", system=_S0, user=_S1, assistant="\n{{content}}",
                 observation=_S2, function="{{content}}", stop_words=("<|user|>", "<|observation|>", "</answer>"),
                 efficient_eos=True, thought_words=("<think>\n", "\n</think>\n\n"), tool_format="glm4_moe",
                 mm_plugin="glm4v"),
    TemplateSpec("glm4_7", "glm", **_GLM_0, thought_words=("<think>", "</think>"), empty_thought_close_only=True,
                 tool_format="glm4_moe"),
    TemplateSpec("glm4_moe", "glm", **_GLM_0, thought_words=("<think>\n", "\n</think>\n\n"), tool_format="glm4_moe"),
    TemplateSpec("glm4v", "glm", prefix="[gMASK]<sop>", system=_S0, user=_S1, assistant="\n{{content}}",
                 observation=_S2, function="{{content}}", stop_words=("<|user|>", "<|observation|>", "</answer>"),
                 efficient_eos=True, thought_words=("<think>\n", "\n</think>\n\n"), tool_format="glm4",
                 mm_plugin="glm4v"),
    TemplateSpec("glm_ocr", "glm", **_GLM_0, tool_format="glm4", mm_plugin="glm4v"),
    TemplateSpec("glmz1", "glm", **_GLM_0, thought_words=("<think>\n", "\n</think>\n\n"), tool_format="glm4"),
    TemplateSpec("gpt_oss", "other", system="<|start|>system<|message|>{{content}}<|end|>",
                 user="<|start|>user<|message|>{{content}}<|end|><|start|>assistant",
                 default_system="You are ChatGPT, a large language model trained by OpenAI.", efficient_eos=True,
                 thought_words=("<|channel|>analysis<|message|>", "<|end|><|start|>assistant<|channel|>final<|message|>")),
    TemplateSpec("granite3", "other", system="<|start_of_role|>system<|end_of_role|>{{content}}<|end_of_text|>\n",
                 user=_GRANITE3_USER, assistant=_S3),
    TemplateSpec("granite4", "other", system="<|start_of_role|>system<|end_of_role|>{{content}}<|end_of_text|>\n",
                 user=_GRANITE3_USER, assistant=_S3, observation=_GRANITE4_OBSERVATION,
                 default_system="You are Granite, developed by IBM. You are a helpful AI assistant.",
                 stop_words=("<|end_of_text|>",)),
    TemplateSpec("hunyuan", "tencent", prefix="<|startoftext|>", system="{{content}}<|extra_4|>",
                 user="{{content}}<|extra_0|>", assistant="{{content}}<|eos|>", stop_words=("<|eos|>",)),
    TemplateSpec("hunyuan_small", "tencent", prefix="<｜hy_begin▁of▁sentence｜>",
                 system="{{content}}<｜hy_place▁holder▁no▁3｜>", user="<｜hy_User｜>{{content}}<｜hy_place▁holder▁no▁8｜>",
                 assistant="{{content}}<｜hy_place▁holder▁no▁2｜>", stop_words=("<｜hy_place▁holder▁no▁2｜>",)),
    TemplateSpec("hy3", "tencent", prefix="{{bos}}", user="<｜hy_User｜>{{content}}<｜hy_Assistant｜>",
                 assistant="{{content}}<｜hy_eos｜>", stop_words=("<｜hy_eos｜>",), replace_eos=True,
                 thought_words=("<think>", "</think>")),
    TemplateSpec("hy_dense_1_8b", "tencent", prefix="{{bos}}", system="{{content}}<｜hy_place▁holder▁no▁3｜>",
                 user="<｜hy_User｜>{{content}}", assistant="<｜hy_Assistant｜>{{content}}",
                 stop_words=("<｜hy_place▁holder▁no▁2｜>",), efficient_eos=True),
    TemplateSpec("hy_dense_7b", "tencent", prefix="{{bos}}", system="{{content}}<|extra_4|>",
                 user="{{content}}<|extra_0|>", stop_words=("<|eos|>",), efficient_eos=True),
    TemplateSpec("index", "plain-text", system="<unk>{{content}}", user="reserved_0{{content}}reserved_1",
                 efficient_eos=True),
    TemplateSpec("kimi_vl", "other", system="<|im_system|>system<|im_middle|>{{content}}<|im_end|>",
                 user=_KIMI_VL_USER, assistant="{{content}}<|im_end|>", default_system="You are a helpful assistant",
                 stop_words=("<|im_end|>",), thought_words=("◁think▷", "◁/think▷"), mm_plugin="kimi_vl"),
    TemplateSpec("minimax1", "other", system=_MINIMAX1_SYSTEM, user=_MINIMAX1_USER,
                 assistant="{{content}}<end_of_sentence>\n", observation=_MINIMAX1_OBSERVATION,
                 default_system="You are a helpful assistant.", stop_words=("<end_of_sentence>",),
                 tool_format="minimax1"),
    TemplateSpec("minimax2", "other", system="]~!b[]~b]system\n{{content}}[e~[\n",
                 user="]~b]user\n{{content}}[e~[\n]~b]ai\n", assistant="{{content}}[e~[\n",
                 observation="]~b]tool\n<response>{{content}}</response>[e~[\n]~b]ai\n",
                 default_system=_MINIMAX2_DEFAULT_SYSTEM, stop_words=("[e~[",),
                 thought_words=("<think>\n", "\n</think>\n\n"), tool_format="minimax2"),
    TemplateSpec("moonlight", "other", system="<|im_system|>system<|im_middle|>{{content}}<|im_end|>",
                 user=_KIMI_VL_USER, assistant="{{content}}<|im_end|>",
                 default_system="You are a helpful assistant provided by Moonshot-AI.", stop_words=("<|im_end|>",),
                 replace_eos=True),
    TemplateSpec("olmo", "other", prefix="{{eos}}", user="<|user|>\n{{content}}<|assistant|>\n"),
    TemplateSpec("openchat", "other", prefix="{{bos}}",
                 user="GPT4 Correct User: {{content}}{{eos}}GPT4 Correct Assistant:"),
    TemplateSpec("seed_coder", "other", system="{{bos}}system\n{{content}}{{eos}}",
                 user="{{bos}}user\n{{content}}{{eos}}{{bos}}assistant\n", default_system=_SEED_CODER_DEFAULT_SYSTEM),
    TemplateSpec("seed_oss", "other", system="{{bos}}system\n{{content}}{{eos}}",
                 user="{{bos}}user\n{{content}}{{eos}}{{bos}}assistant\n", function="{{bos}}\n{{content}}{{eos}}",
                 thought_words=("<seed:think>", "</seed:think>"), tool_format="seed_oss"),
    TemplateSpec("solar", "plain-text", system="### System:\n{{content}}\n\n",
                 user="### User:\n{{content}}\n\n### Assistant:\n", efficient_eos=True),
    TemplateSpec("starchat", "other", system="<|system|>\n{{content}}<|end|>\n",
                 user="<|user|>\n{{content}}<|end|>\n<|assistant|>", assistant="{{content}}<|end|>\n",
                 stop_words=("<|end|>",)),
    TemplateSpec("telechat2", "plain-text", system="<_system>{{content}}", user="<_user>{{content}}<_bot>",
                 default_system="你是中国电信星辰语义大模型，英文名是TeleChat，你是由中电信人工智能科技有限公司和中国电信人工智能研究院（TeleAI）研发的人工智能助手。"),
    TemplateSpec("vicuna", "plain-text", user="USER: {{content}} ASSISTANT:", default_system=_VICUNA_DEFAULT_SYSTEM,
                 replaces_own_template=True),
    TemplateSpec("xuanyuan", "plain-text", user="Human: {{content}} Assistant:",
                 default_system=_XUANYUAN_DEFAULT_SYSTEM),
    TemplateSpec("youtu", "tencent", prefix="{{bos}}", user="<|User|>{{content}}<|Assistant|>",
                 assistant="{{content}}<|end_of_text|>",
                 observation="<tool_response>\n{{content}}\n</tool_response><|Assistant|>", function="{{content}}",
                 stop_words=("<|end_of_text|>",), replace_eos=True, thought_words=("<think>\n", "\n</think>\n\n")),
    TemplateSpec("youtu_vl", "tencent", system="<|begin_of_text|>system\n{{content}}<|end_of_text|>\n",
                 user=_YOUTU_VL_USER, assistant=_S3, default_system="You are a helpful assistant.",
                 stop_words=("<|end_of_text|>",), mm_plugin="youtu_vl"),
    TemplateSpec("yuan", "plain-text", user="{{content}}<sep>", assistant="{{content}}<eod>\n", stop_words=("<eod>",),
                 tokens=("<sep>",)),
    TemplateSpec("zephyr", "other", system="<|system|>\n{{content}}{{eos}}",
                 user="<|user|>\n{{content}}{{eos}}<|assistant|>\n",
                 default_system="You are Zephyr, a helpful assistant."),
)
