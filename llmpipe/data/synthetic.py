"""Deterministic generator of llmpipe's bundled synthetic data (datasets + tokenizer corpus).

    python -m llmpipe.data.synthetic --out data

rewrites data/*.json, data/dataset_info.json and data/corpus/*.txt byte-for-byte from SEED. The tasks
have exact answers built from small closed vocabularies (word reversal, invented-object colours,
addition in words, uppercasing; Chinese colours/addition/translation), so a 2-layer model learns them
in ~100 optimizer steps. Pure python: no torch, no datasets.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SEED = 1234
WORDS = ("apple river stone cloud bird lamp house tree window garden music paper candle forest ocean tiger "
         "pencil summer winter mountain coffee doctor rabbit flower").split()
OBJECTS = ("zorblat quimble flonket drizzap marvock plinth snorgle wuzzit trelpo gandrix blorp "
           "kizzle mopter yarnish fendle glimbo zappet crunkle vorpin tuzzle hobnik sprocklet "
           "dwindle quazzer nimbet rofflin skivvet thrumble wimpet yonder zelkin brastle").split()
COLOURS = "red blue green yellow purple orange white black".split()
NUM = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
       "fifteen sixteen seventeen eighteen").split()
PLACES = "river hill forest cave meadow lake village bridge tower garden".split()
FOODS = "bread berries fish honey seeds apples carrots cheese rice mushrooms".split()
VERBS = "sings to|dances with|hides from|waits for|talks to|plays with|runs past|sleeps near".split("|")
COLOUR_Q = ("What is the colour of the {}?", "Which colour is the {}?", "Tell me the colour of the {}.")
INSTR = {"reverse": "Reverse the order of the words.", "add": "Add the numbers and answer in words.",
         "upper": "Write the word in capital letters."}
ZH_COLOUR = {"苹果": "红色", "香蕉": "黄色", "天空": "蓝色", "小草": "绿色", "雪花": "白色", "乌鸦": "黑色",
             "橙子": "橙色", "葡萄": "紫色", "大海": "蓝色", "牛奶": "白色", "树叶": "绿色", "柠檬": "黄色",
             "草莓": "红色", "茄子": "紫色", "煤炭": "黑色", "胡萝卜": "橙色"}
ZH_NUM = "零 一 二 三 四 五 六 七 八 九 十 十一 十二 十三 十四 十五 十六 十七 十八".split()
ZH_EN = {"苹果": "apple", "河流": "river", "石头": "stone", "云朵": "cloud", "小鸟": "bird", "灯": "lamp",
         "房子": "house", "树": "tree", "窗户": "window", "花园": "garden", "音乐": "music", "纸": "paper",
         "蜡烛": "candle", "森林": "forest", "海洋": "ocean", "老虎": "tiger", "铅笔": "pencil",
         "夏天": "summer", "冬天": "winter", "山": "mountain", "咖啡": "coffee", "医生": "doctor",
         "兔子": "rabbit", "星球": "planet", "篮子": "basket", "花": "flower", "面包": "bread",
         "椅子": "chair", "马": "horse", "水": "water"}
ZH_FILLER = ("今天 明天 我们 他们 老师 学生 朋友 城市 公园 学校 图书馆 早上 晚上 喜欢 看见 听到 觉得 "
             "因为 所以 但是 已经 非常 一起 安静 美丽 快乐 认真 慢慢 走路 唱歌 读书 写字 吃饭 休息 "
             "问题 答案 颜色 数字 句子 世界 时间 地方 故事 天气 风 雨 太阳 月亮 星星 火车 飞机 电脑").split()
EN_FILLER = ("the a and of to in is was it that with for on as at by from this they we you he she "
             "people time year way day man thing woman life child world school state family student "
             "group country problem hand part place case week company system program question work "
             "night point home room mother area money story fact month lot right study book eye job "
             "word business issue side kind head friend father power hour game line end member law "
             "car city community name president team minute idea kid body information back parent "
             "face others level office door health person art war history party result change morning "
             "reason research girl guy moment air teacher force education foot boy age policy process "
             "always never often quietly slowly happily carefully suddenly gently brightly together "
             "build carry follow watch listen remember forget travel explain answer count write read "
             "bright dark warm cold tall short young old strong gentle clever curious patient brave "
             "because although while before after until since however therefore meanwhile").split()
SYSTEMS = ("You are a helpful assistant.", "Answer briefly.", "You are a careful assistant.")


def _rng(tag: str) -> random.Random:
    return random.Random(f"{SEED}:{tag}")


_FACTS = _rng("facts")
COLOUR_OF = {o: _FACTS.choice(COLOURS) for o in OBJECTS}  # the fixed "world knowledge" the tasks test
HOME_OF = {o: _FACTS.choice(PLACES) for o in OBJECTS}
FOOD_OF = {o: _FACTS.choice(FOODS) for o in OBJECTS}


def task(rng: random.Random, kind: str | None = None) -> tuple[str, str, str, str]:
    """One English task: (instruction, input, correct answer, plausible wrong answer)."""
    kind = kind or rng.choice(("reverse", "colour", "add", "upper"))
    if kind == "reverse":
        ws = rng.sample(WORDS, rng.randint(2, 4))
        right = " ".join(reversed(ws))
        wrong = " ".join(ws) if rng.random() < 0.5 or len(ws) == 2 else " ".join(ws[1:] + ws[:1])
        return INSTR[kind], " ".join(ws), right, wrong
    if kind == "colour":
        obj = rng.choice(OBJECTS)
        bad = rng.choice([c for c in COLOURS if c != COLOUR_OF[obj]])
        return rng.choice(COLOUR_Q).format(obj), "", f"The {obj} is {COLOUR_OF[obj]}.", f"The {obj} is {bad}."
    if kind == "add":
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        off = rng.choice([-1, 1]) if 0 < a + b < 18 else (1 if a + b == 0 else -1)
        return INSTR[kind], f"{NUM[a]} plus {NUM[b]}", NUM[a + b], NUM[a + b + off]
    w = rng.choice(WORDS)
    return INSTR["upper"], w, w.upper(), rng.choice([w, w.capitalize()])


def zh_task(rng: random.Random) -> tuple[str, str, str]:
    kind = rng.choice(("colour", "add", "translate", "reverse"))
    if kind == "colour":
        obj = rng.choice(sorted(ZH_COLOUR))
        return f"{obj}是什么颜色的？", "", f"{obj}是{ZH_COLOUR[obj]}的。"
    if kind == "add":
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        return f"{ZH_NUM[a]}加{ZH_NUM[b]}等于多少？", "", f"{ZH_NUM[a]}加{ZH_NUM[b]}等于{ZH_NUM[a + b]}。"
    if kind == "translate":
        zh = rng.choice(sorted(ZH_EN))
        return f"把“{zh}”翻译成英文。", "", ZH_EN[zh]
    ws = rng.sample(sorted(ZH_EN), rng.randint(2, 4))
    return "把下面的词倒过来排列。", " ".join(ws), " ".join(reversed(ws))


def prose(rng: random.Random, n_sentences: int) -> str:
    out = []
    for _ in range(n_sentences):
        o = rng.choice(OBJECTS)
        t = rng.randrange(5)
        if t == 0:
            out.append(f"The {o} is {COLOUR_OF[o]}.")
        elif t == 1:
            out.append(f"The {COLOUR_OF[o]} {o} lives near the {HOME_OF[o]}.")
        elif t == 2:
            out.append(f"Every morning the {o} eats {FOOD_OF[o]}.")
        elif t == 3:
            o2 = rng.choice(OBJECTS)
            out.append(f"The {o} {rng.choice(VERBS)} the {COLOUR_OF[o2]} {o2} by the {HOME_OF[o]}.")
        else:
            out.append(f"When the {o} is hungry, it goes to the {HOME_OF[o]} to find {FOOD_OF[o]}.")
    return " ".join(out)


def _alpaca(rng, n, kind=None):
    rows = []
    for i in range(n):
        ins, inp, out, _ = task(rng, kind or ("reverse", "colour", "add", "upper")[i % 4])
        rows.append({"instruction": ins, "input": inp, "output": out})
    return rows


def _sharegpt(rng, n):
    rows = []
    for _ in range(n):
        conv = [{"from": "system", "value": rng.choice(SYSTEMS)}] if rng.random() < 0.25 else []
        for _ in range(rng.randint(2, 3)):
            ins, inp, out, _ = task(rng)
            conv += [{"from": "human", "value": f"{ins}\n{inp}" if inp else ins}, {"from": "gpt", "value": out}]
        rows.append({"conversations": conv})
    return rows


def _zh(rng, n):
    return [dict(zip(("instruction", "input", "output"), zh_task(rng))) for _ in range(n)]


REFUSALS = ("I don't know.", "Sorry, I cannot help with that.", "I am not sure.", "I cannot answer that.")
UNHELPFUL = 0.6   # share of the reverse/colour/add feedback rows whose bad answer is a refusal


def _bad_answer(rng, kind, wrong):
    """The rejected (pairs) or undesirable (KTO) answer: a refusal for a share UNHELPFUL of the reverse, colour
    and addition rows (a reward model of the tiny model's size learns to rank those in a few dozen steps), else
    the plausible wrong answer, which takes the task itself (word order, the colour facts, sums) to rank."""
    if kind != "upper" and rng.random() < UNHELPFUL:
        return rng.choice(REFUSALS)
    return wrong


def _pref(rng, n):
    rows = []
    for i in range(n):
        kind = ("reverse", "colour", "add", "upper")[i % 4]
        ins, inp, good, bad = task(rng, kind)
        rows.append({"instruction": ins, "input": inp, "chosen": good, "rejected": _bad_answer(rng, kind, bad)})
    return rows


def _kto(rng, n):
    rows = []
    for i in range(n):
        kind = ("reverse", "colour", "add", "upper")[i % 4]
        ins, inp, good, bad = task(rng, kind)
        bad = _bad_answer(rng, kind, bad)
        ok = rng.random() < 0.5
        rows.append({"instruction": ins, "input": inp, "output": good if ok else bad, "kto_tag": ok})
    return rows


def _pt(rng, n):
    return [{"text": prose(rng, rng.randint(3, 7))} for _ in range(n)]


TOOL_DEFS = [
    {"name": "colour_of", "description": "Look up the colour of an object.",
     "parameters": {"type": "object", "properties": {"object": {"type": "string", "description": "the object"}},
                    "required": ["object"]}},
    {"name": "add", "description": "Add two whole numbers.",
     "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                    "required": ["a", "b"]}},
]


def _tools(rng, n):
    """Function calling (sharegpt + tools column): look a colour up or add with a tool, or answer directly."""
    rows = []
    for i in range(n):
        if i % 3 == 2:
            ins, inp, out, _ = task(rng, "reverse")
            conv = [{"from": "human", "value": f"{ins}\n{inp}"}, {"from": "gpt", "value": out}]
        else:
            if i % 3 == 0:
                obj = rng.choice(OBJECTS)
                q, call = rng.choice(COLOUR_Q).format(obj), {"name": "colour_of", "arguments": {"object": obj}}
                result, answer = {"colour": COLOUR_OF[obj]}, f"The {obj} is {COLOUR_OF[obj]}."
            else:
                a, b = rng.randint(0, 9), rng.randint(0, 9)
                q, call = f"What is {NUM[a]} plus {NUM[b]}?", {"name": "add", "arguments": {"a": a, "b": b}}
                result, answer = {"sum": a + b}, f"{NUM[a]} plus {NUM[b]} is {NUM[a + b]}."
            conv = [{"from": "human", "value": q}, {"from": "function_call", "value": json.dumps(call)},
                    {"from": "observation", "value": json.dumps(result)}, {"from": "gpt", "value": answer}]
        rows.append({"conversations": conv, "tools": json.dumps(TOOL_DEFS)})
    return rows


LEARN_EVAL = 100         # demo_learn_eval's size; demo_learn never repeats one of its inputs
LEARN_INSTR = "Find the colour and write it in capital letters."


def _learn_input(rng: random.Random) -> tuple[str, str]:
    """Two or three WORDS and one of COLOURS at a random place (each a single token after a space)."""
    ws = rng.sample(WORDS, rng.randint(2, 3))
    colour = rng.choice(COLOURS)
    ws.insert(rng.randrange(len(ws) + 1), colour)
    return " ".join(ws), colour.upper()


def _learn_split(n_train: int) -> tuple[list[dict], list[dict]]:
    rng = _rng("demo_learn")
    held, seen = [], set()
    while len(held) < LEARN_EVAL:
        inp, out = _learn_input(rng)
        if inp not in seen:
            seen.add(inp)
            held.append({"instruction": LEARN_INSTR, "input": inp, "output": out})
    train = []
    while len(train) < n_train:
        inp, out = _learn_input(rng)
        if inp not in seen:
            train.append({"instruction": LEARN_INSTR, "input": inp, "output": out})
    return train, held


def _learn(rng, n):
    """demo_learn: one skill with one exact answer, fully determined by the prompt: find the colour among a few
    words and write it in capitals ("tiger red ocean" -> "RED"). The pre-trained tiny model cannot (it was
    never taught upper-casing, and answers this with a wrong word: ~0 % held-out exact match); LoRA teaches it
    in a few hundred steps (>= 90 % on held-out inputs that the train split never contains)."""
    return _learn_split(n)[0]


def _learn_eval(rng, n):
    return _learn_split(0)[1][:n]


# name -> (file, builder, size, registry entry)
DATASETS = {
    "demo_sft": ("demo_sft.json", _alpaca, 600, {}),
    "demo_sft_eval": ("demo_sft_eval.json", _alpaca, 100, {}),
    "demo_sft_sharegpt": ("demo_sft_sharegpt.json", _sharegpt, 200, {
        "formatting": "sharegpt", "columns": {"messages": "conversations"},
        "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                 "system_tag": "system"}}),
    "demo_sft_sharegpt_eval": ("demo_sft_sharegpt_eval.json", _sharegpt, 40, "demo_sft_sharegpt"),
    "demo_sft_zh": ("demo_sft_zh.json", _zh, 200, {}),
    "demo_sft_zh_eval": ("demo_sft_zh_eval.json", _zh, 50, {}),
    "demo_pt": ("demo_pt.json", _pt, 400, {"columns": {"prompt": "text"}}),
    "demo_pt_eval": ("demo_pt_eval.json", _pt, 50, {"columns": {"prompt": "text"}}),
    "demo_pref": ("demo_pref.json", _pref, 400, {"ranking": True, "columns": {
        "prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"}}),
    "demo_pref_eval": ("demo_pref_eval.json", _pref, 100, "demo_pref"),
    "demo_kto": ("demo_kto.json", _kto, 400, {"columns": {
        "prompt": "instruction", "query": "input", "response": "output", "kto_tag": "kto_tag"}}),
    "demo_kto_eval": ("demo_kto_eval.json", _kto, 100, "demo_kto"),
    "demo_tools": ("demo_tools.json", _tools, 300, {
        "formatting": "sharegpt", "columns": {"messages": "conversations", "tools": "tools"}}),
    "demo_tools_eval": ("demo_tools_eval.json", _tools, 60, "demo_tools"),
    "demo_learn": ("demo_learn.json", _learn, 1000, {}),
    "demo_learn_eval": ("demo_learn_eval.json", _learn_eval, LEARN_EVAL, {}),
}


def build_datasets() -> dict[str, list[dict]]:
    return {name: builder(_rng(name), n) for name, (_, builder, n, _) in DATASETS.items()}


def dataset_info() -> dict:
    info = {}
    for name, (fname, _, _, extra) in DATASETS.items():
        extra = DATASETS[extra][3] if isinstance(extra, str) else extra
        info[name] = {"file_name": fname, **extra}
    # the image and video datasets (llmpipe.data.mm_synthetic and mm_synthetic_video write them)
    from llmpipe.data.mm_synthetic import INFO
    from llmpipe.data.mm_synthetic_video import INFO as VIDEO_INFO
    from llmpipe.data.mc_synthetic import INFO as MC_INFO   # mc_demo_train (llmpipe.data.mc_synthetic writes it)
    from llmpipe.data.mm_synthetic_audio import INFO as AUDIO_INFO   # audio_tones (mm_synthetic_audio writes it)

    return {**info, **INFO, **VIDEO_INFO, **MC_INFO, **AUDIO_INFO}


def corpus() -> dict[str, str]:
    """Tokenizer training text: every task phrasing plus varied filler prose, English and Chinese."""
    rng = _rng("corpus")
    en, zh = [], []
    for _ in range(1200):
        ins, inp, good, bad = task(rng)
        en.append(" ".join(x for x in (ins, inp, good, bad) if x))
    for _ in range(300):
        en.append(prose(rng, 3))
    syl = "ba ko ri mu te sa lo ni ve dra stri plo gan mer tor qui zel fen wor chi pa du hel bri sno kar".split()
    pseudo = sorted({"".join(rng.choice(syl) for _ in range(rng.randint(2, 3))) for _ in range(2000)})
    vocab = EN_FILLER + WORDS + OBJECTS + COLOURS + NUM + PLACES + FOODS + pseudo
    for _ in range(2600):
        s = " ".join(rng.choice(vocab) for _ in range(rng.randint(5, 12)))
        en.append(s[0].upper() + s[1:] + rng.choice(".!?,;:"))
    en += [f"{w} {w.upper()} {w.capitalize()} {w.upper()}." for w in (WORDS + OBJECTS + COLOURS + NUM) * 8]
    en += [f"system user assistant {s} {i} {i * 7 + 3}" for i, s in enumerate(SYSTEMS * 20)]
    zvocab = ZH_FILLER + sorted(ZH_COLOUR) + sorted(set(ZH_COLOUR.values())) + ZH_NUM + sorted(ZH_EN)
    for _ in range(600):
        zh.append(" ".join(x for x in zh_task(rng) if x))
    for _ in range(900):
        zh.append("".join(rng.choice(zvocab) for _ in range(rng.randint(4, 10))) + rng.choice("。！？，"))
    return {"en.txt": "\n".join(en) + "\n", "zh.txt": "\n".join(zh) + "\n"}


def _dump_rows(rows: list[dict]) -> str:
    return "[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n]\n"


def write_all(out: str | Path) -> list[Path]:
    out = Path(out)
    (out / "corpus").mkdir(parents=True, exist_ok=True)
    written = []
    for name, rows in build_datasets().items():
        p = out / DATASETS[name][0]
        p.write_text(_dump_rows(rows), encoding="utf-8")
        written.append(p)
    p = out / "dataset_info.json"
    p.write_text(json.dumps(dataset_info(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    written.append(p)
    from llmpipe.data import mm_synthetic

    written += mm_synthetic.write_all(out)
    from llmpipe.data import mm_synthetic_video

    written += mm_synthetic_video.write_all(out)
    from llmpipe.data import mm_synthetic_audio

    written += mm_synthetic_audio.write_all(out)
    from llmpipe.data import mc_synthetic

    written += mc_synthetic.write_train(out)
    for fname, text in corpus().items():
        p = out / "corpus" / fname
        p.write_text(text, encoding="utf-8")
        written.append(p)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="data", help="target folder (default: data)")
    args = ap.parse_args(argv)
    for p in write_all(args.out):
        print(f"{p}  {p.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
