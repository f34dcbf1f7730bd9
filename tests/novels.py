"""Generated novels for the split tests and bench/split_bench.py: deterministic, of any length,
shaped like a downloaded Chinese web novel (headings, indented paragraphs, dialogue with tags)."""

from __future__ import annotations

import random

NAMES = ("韩立", "墨大夫", "厉飞雨", "张铁", "王门主")
PLACES = ("七玄门", "神手谷", "山边小村", "炼骨崖", "彩霞山", "落日峰")
ACTIONS = ("推开了木门", "站在崖边", "低头看着手中的瓶子", "沿着山路慢慢走去", "在灯下翻着一本旧书", "望着远处的云",
           "把药草摊在石桌上", "听见身后传来脚步声")
DETAILS = ("的晨雾还没有散", "的松树在风里摇晃", "的石阶上落满了叶子", "的钟声远远传来", "的灯火一盏盏亮了")
TAGS = ("说道", "低声道", "笑道", "问道")
SPEECH = ("你来了", "明天一早动身", "这瓶药你收好", "不要告诉任何人", "我知道了", "山里起雾了，小心些",
          "门里的规矩你都记住了吗", "再练三个月，你就能下山了")


def chinese_novel(chapters: int, chapter_chars: int, seed: int = 0) -> str:
    """`chapters` chapters of about `chapter_chars` characters each: `第N章 <place>N`, then paragraphs
    of narration (one to three sentences) and of dialogue (`韩立笑道：“…”`)."""
    rng = random.Random(seed)
    out: list[str] = []
    for n in range(1, chapters + 1):
        out += [f"第{n}章 {rng.choice(PLACES)}{n}", ""]
        size = 0
        while size < chapter_chars:
            if rng.random() < 0.4:
                paragraph = f"　　{rng.choice(NAMES)}{rng.choice(TAGS)}：“{rng.choice(SPEECH)}，{rng.choice(SPEECH)}。”"
            else:
                paragraph = "　　" + "".join(f"{rng.choice(NAMES)}{rng.choice(ACTIONS)}，{rng.choice(PLACES)}"
                                            f"{rng.choice(DETAILS)}。" for _ in range(rng.randint(1, 3)))
            out.append(paragraph)
            size += len(paragraph)
        out.append("")
    return "\n".join(out)
