"""The storyboard engine: real keyframe PNGs and timing files in, one self-contained HTML page out."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from fanren.engines.base import Request
from fanren.engines.storyboard import SCRIPT, StoryboardEngine

SHOTS: list[dict[str, Any]] = [
    {"id": "s1", "scene": "gate", "action": "林青走上石阶", "camera": "wide shot",
     "narration": "山门在雾中。", "lines": []},
    {"id": "s2", "scene": "gate", "action": "The elder <blocks> her way & waits", "camera": "",
     "narration": "", "lines": [{"who": "elder", "text": "你为何而来？"}]},
    {"id": "s3.b", "scene": "hall", "action": "他点了点头", "camera": "close-up", "narration": "",
     "lines": []},
]


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, dict[str, Path]]:
    """Keyframes at 16:9, 9:16 and 1:1, and each shot's timing.json."""
    found: dict[str, dict[str, Path]] = {}
    for shot, size, colour, seconds in zip(SHOTS, [(1280, 720), (720, 1280), (960, 960)],
                                           ["#3a6ea5", "#a53a3a", "#3aa55c"], [3.75, 2.5, 4.125]):
        image = tmp_path / f"{shot['id']}.png"
        Image.new("RGB", size, colour).save(image)
        timing = tmp_path / f"{shot['id']}.json"
        timing.write_text(json.dumps({"duration": seconds, "cues": []}))
        found[f"keyframe:{shot['id']}"] = {"image.png": image}
        found[f"shot:{shot['id']}"] = {"timing.json": timing}
    return found


def storyboard(out: Path, inputs: dict[str, dict[str, Path]], language: str = "zh") -> str:
    out.mkdir(parents=True, exist_ok=True)
    request = Request(node_id="storyboard", kind="storyboard",
                      params={"title": "试炼 <第一集>", "language": language, "shots": SHOTS},
                      inputs=inputs, out_dir=out)
    outputs = StoryboardEngine().run(request)
    assert set(outputs) == {"storyboard.html"}
    return outputs["storyboard.html"].read_text(encoding="utf-8")


def test_every_shot_has_a_card_with_an_embedded_thumbnail(tmp_path: Path,
                                                          inputs: dict[str, dict[str, Path]]) -> None:
    page = storyboard(tmp_path / "out", inputs)

    assert re.findall(r'<article class="card" data-shot="([^"]+)">', page) == ["s1", "s2", "s3.b"]
    thumbnails = re.findall(r'src="data:image/jpeg;base64,([A-Za-z0-9+/=]+)"', page)
    sizes = [Image.open(io.BytesIO(base64.b64decode(t))).size for t in thumbnails]
    assert sizes == [(320, 180), (320, 569), (320, 320)]
    colours = [Image.open(io.BytesIO(base64.b64decode(t))).convert("RGB").getpixel((160, 90))
               for t in thumbnails]
    assert [tuple(round(c / 16) for c in rgb) for rgb in colours if isinstance(rgb, tuple)] == [
        (4, 7, 10), (10, 4, 4), (4, 10, 6)]  # the keyframes' colours, JPEG-rounded


def test_cards_show_what_the_shot_is_and_how_long_it_lasts(tmp_path: Path,
                                                           inputs: dict[str, dict[str, Path]]) -> None:
    page = storyboard(tmp_path / "out", inputs)

    cards = page.split('<article class="card"')[1:]
    assert '<span class="duration">3.8 s</span>' in cards[0]
    assert "山门在雾中。" in cards[0] and "林青走上石阶" in cards[0] and "wide shot" in cards[0]
    assert "<b>elder</b>你为何而来？" in cards[1]
    assert "The elder &lt;blocks&gt; her way &amp; waits" in cards[1]
    assert '<span class="duration">2.5 s</span>' in cards[1]
    assert "<title>试炼 &lt;第一集&gt; · storyboard</title>" in page
    assert "<span>3 个镜头</span><span>10.4 s</span>" in page


def test_statuses_come_from_report_js_beside_the_page(tmp_path: Path,
                                                      inputs: dict[str, dict[str, Path]]) -> None:
    page = storyboard(tmp_path / "out", inputs)

    assert '<script src="report.js"></script>' in page
    assert page.index('<script src="report.js"></script>') < page.index("window.FANREN_REPORT")
    assert "if (!report || !report.nodes) { return; }" in page  # still a page without report.js
    assert '"Noto Sans CJK SC"' in page and "Microsoft YaHei" in page


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_page_script_is_valid_javascript(tmp_path: Path) -> None:
    script = tmp_path / "page.js"
    script.write_text(SCRIPT, encoding="utf-8")

    check = subprocess.run(["node", "--check", str(script)], check=False, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_the_page_is_self_contained(tmp_path: Path, inputs: dict[str, dict[str, Path]]) -> None:
    page = storyboard(tmp_path / "out", inputs)

    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert [s for s in sources if not s.startswith("data:")] == ["report.js"]
    assert str(tmp_path) not in page


def test_same_request_gives_the_same_bytes(tmp_path: Path, inputs: dict[str, dict[str, Path]]) -> None:
    assert storyboard(tmp_path / "a", inputs) == storyboard(tmp_path / "b", inputs)


def test_a_shot_without_a_keyframe_or_timing_still_gets_a_card(tmp_path: Path,
                                                               inputs: dict[str, dict[str, Path]]) -> None:
    partial = {k: v for k, v in inputs.items() if k not in ("keyframe:s2", "shot:s2")}
    page = storyboard(tmp_path / "out", partial, language="en")

    card = page.split('<article class="card"')[2]
    assert '<div class="missing">no keyframe yet</div>' in card
    assert '<span class="duration">—</span>' in card
    assert len(re.findall(r"data:image/jpeg;base64,", page)) == 2
    assert '<html lang="en">' in page


def test_consistency_badges_show_each_characters_score_red_when_flagged(
        tmp_path: Path, inputs: dict[str, dict[str, Path]]) -> None:
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)")
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    storyboard(tmp_path / "out", inputs)
    shot = {"similarity": 0.8234, "to_centroid": 0.9, "z": 0.5, "z_centroid": 0.4, "region": [0, 1],
            "below": False, "outlier": False}
    report = {"profile": "draft", "counts": {}, "nodes": [], "consistency": {
        "model": "facebook/dinov2-small", "threshold": 0.6, "outlier_z": 2.0, "flagged": [],
        "characters": {
            "lin": {"name": "林青", "shots": [{**shot, "shot": "s1"},
                                             {**shot, "shot": "s2", "similarity": 0.55, "below": True}]},
            "elder": {"name": "elder", "shots": [{**shot, "shot": "s2", "similarity": 0.7, "outlier": True},
                                                 {**shot, "shot": "gone", "similarity": 0.9}]}}}}
    (tmp_path / "out" / "report.js").write_text(f"window.FANREN_REPORT = {json.dumps(report)};\n",
                                                encoding="utf-8")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=["--headless", "--no-sandbox",
                                                                         "--disable-gpu"])
        try:
            page = browser.new_page()
            page.goto((tmp_path / "out" / "storyboard.html").as_uri())
            badges = page.eval_on_selector_all(
                ".card", "cards => cards.map(c => [c.dataset.shot, [...c.querySelectorAll('.score')]"
                         ".map(b => [b.textContent, b.className])])")
        finally:
            browser.close()

    assert badges == [["s1", [["林青 0.82", "score"]]],
                      ["s2", [["林青 0.55", "score low"], ["elder 0.70", "score outlier"]]],
                      ["s3.b", []]]
