"""The storyboard: one self-contained HTML contact sheet of every shot, to look at the drama.

Thumbnails are embedded as data URIs so the page opens from disk with nothing beside it. What
changes on every build (which nodes ran, were cached or failed, and which engine rendered them)
is not in the page: it would change the page's bytes, and so its key, on every build. The build
writes it to report.js beside the page, and a few lines of JavaScript put it on the cards, with
the consistency check's scores (a badge per character a keyframe shows, red when flagged).
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import EngineError
from .base import Engine, Request

THUMB_WIDTH = 320
JPEG_QUALITY = 82

LABELS = {
    "zh": {"shots": "个镜头", "scene": "场景", "camera": "机位", "narration": "旁白",
           "no_keyframe": "暂无关键帧", "nodes": "其他节点", "profile": "配置"},
    "en": {"shots": "shots", "scene": "scene", "camera": "camera", "narration": "narration",
           "no_keyframe": "no keyframe yet", "nodes": "other nodes", "profile": "profile"},
}


class StoryboardEngine(Engine):
    family = "report"
    name = "storyboard"
    version = "3"  # 2: thumbnails reduced by a whole factor before the Lanczos pass; 3: consistency badges
    options_known = frozenset[str]()  # takes no options
    kinds = frozenset({"storyboard"})

    def run(self, request: Request) -> dict[str, Path]:
        if request.kind != "storyboard":
            raise EngineError(f"the storyboard engine cannot render a {request.kind!r} node")
        params = request.params
        labels = LABELS.get(str(params["language"]), LABELS["en"])
        cards = [shot_card(shot, request.inputs, labels) for shot in params["shots"]]
        durations = [_duration(request.inputs, str(shot["id"])) for shot in params["shots"]]
        total = sum(d for d in durations if d is not None)
        page = PAGE.format(
            lang="zh-CN" if params["language"] == "zh" else "en",
            title=html.escape(str(params["title"])),
            count=len(cards),
            shots_label=labels["shots"],
            total=_seconds(total),
            profile_label=labels["profile"],
            nodes_label=labels["nodes"],
            style=STYLE,
            cards="\n".join(cards),
            script=SCRIPT,
        )
        out = request.out_dir / "storyboard.html"
        out.write_text(page, encoding="utf-8")
        return {"storyboard.html": out}


def shot_card(shot: Mapping[str, Any], inputs: Mapping[str, Mapping[str, Path]],
              labels: Mapping[str, str]) -> str:
    """One shot's card: keyframe thumbnail, id, scene, action, camera, what is said, duration."""
    shot_id = str(shot["id"])
    keyframe = inputs.get(f"keyframe:{shot_id}", {}).get("image.png")
    if keyframe is not None:
        uri = thumbnail_uri(Path(keyframe))
        picture = f'<img src="{uri}" alt="{html.escape(shot_id)}">'
    else:
        picture = f'<div class="missing">{html.escape(labels["no_keyframe"])}</div>'
    duration = _duration(inputs, shot_id)
    said: list[str] = []
    if str(shot.get("narration", "")).strip():
        said.append(f'<li class="narration"><b>{labels["narration"]}</b>'
                    f'{html.escape(str(shot["narration"]))}</li>')
    said += [f'<li><b>{html.escape(str(line["who"]))}</b>{html.escape(str(line["text"]))}</li>'
             for line in shot.get("lines", [])]
    camera = str(shot.get("camera", "")).strip()
    length = _seconds(duration) if duration is not None else "—"
    scene = f'{labels["scene"]} {html.escape(str(shot.get("scene", "")))}'
    return "\n".join(part for part in [
        f'<article class="card" data-shot="{html.escape(shot_id)}">',
        f'  <figure>{picture}<span class="duration">{length}</span></figure>',
        '  <div class="body">',
        f'    <h2><span class="id">{html.escape(shot_id)}</span><span class="scene">{scene}</span></h2>',
        f'    <p class="action">{html.escape(str(shot.get("action", "")))}</p>',
        f'    <p class="camera">{labels["camera"]}: {html.escape(camera)}</p>' if camera else "",
        f'    <ul class="said">{"".join(said)}</ul>' if said else "",
        '    <ul class="scores"></ul>',
        '    <ul class="nodes"></ul>',
        "  </div>",
        "</article>",
    ] if part)


def thumbnail_uri(image: Path) -> str:
    """A THUMB_WIDTH-wide JPEG of the image as a data URI (same bytes for the same image)."""
    from PIL import Image  # only when a storyboard is drawn: a no-op build never imports Pillow

    with Image.open(image) as source:
        picture = source.convert("RGB")
    height = max(1, round(picture.height * THUMB_WIDTH / picture.width))
    # reducing_gap: a box reduction by a whole factor first, then Lanczos over at least 2x; Pillow
    # calls the result indistinguishable from Lanczos alone, at 3 ms instead of 7 for a 720p
    # keyframe (the storyboard of 1,000 shots draws 1,000 thumbnails on every edit)
    picture = picture.resize((THUMB_WIDTH, height), Image.Resampling.LANCZOS, reducing_gap=2.0)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _duration(inputs: Mapping[str, Mapping[str, Path]], shot_id: str) -> float | None:
    timing = inputs.get(f"shot:{shot_id}", {}).get("timing.json")
    if timing is None:
        return None
    return float(json.loads(Path(timing).read_text(encoding="utf-8"))["duration"])


def _seconds(value: float) -> str:
    return f"{value:.1f} s"


FONTS = ('"Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "PingFang SC", '
         '"Hiragino Sans GB", "Microsoft YaHei", "WenQuanYi Zen Hei", system-ui, sans-serif')

STYLE = """
:root { --ink: #1d1f23; --muted: #6b7079; --paper: #f4f2ee; --card: #fff; --line: #e3e0da; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--paper); color: var(--ink); font: 15px/1.55 FONTS; }
header { padding: 28px 32px 20px; background: #1d1f23; color: #f4f2ee; }
header h1 { margin: 0 0 6px; font-size: 26px; font-weight: 700; letter-spacing: .02em; }
header .meta { margin: 0; color: #b9bcc3; font-size: 14px; display: flex; flex-wrap: wrap; gap: 6px 16px; }
header .meta:empty, .nodes:empty, #others:empty { display: none; }
#others { margin: 12px 0 0; padding: 0; }
main { display: grid; grid-template-columns: repeat(auto-fill, minmax(320px, 1fr)); gap: 20px;
       padding: 24px 32px 40px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px; overflow: hidden;
        box-shadow: 0 1px 2px rgba(0,0,0,.05); display: flex; flex-direction: column; }
.card.failed { border-color: #d64545; box-shadow: 0 0 0 2px rgba(214,69,69,.25); }
figure { position: relative; margin: 0; background: #111; }
figure img { display: block; width: 100%; height: auto; max-height: 400px; object-fit: contain; }
figure .missing { aspect-ratio: 16 / 9; display: grid; place-items: center; color: #8a8f98; }
.duration { position: absolute; right: 8px; bottom: 8px; padding: 1px 8px; border-radius: 999px;
            background: rgba(0,0,0,.7); color: #fff; font-size: 12px; font-variant-numeric: tabular-nums; }
.body { padding: 12px 14px 14px; }
h2 { margin: 0 0 6px; font-size: 16px; display: flex; align-items: baseline; gap: 10px; }
h2 .id { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; }
h2 .scene { color: var(--muted); font-size: 13px; font-weight: 400; }
.action { margin: 0 0 4px; }
.camera { margin: 0 0 6px; color: var(--muted); font-size: 13px; }
.said { list-style: none; margin: 8px 0 0; padding: 8px 0 0; border-top: 1px dashed var(--line); }
.said li { margin: 2px 0; }
.said b { display: inline-block; min-width: 4em; margin-right: 6px; color: #8a5a12; font-weight: 600; }
.said .narration { color: #3d4350; font-style: italic; }
.nodes { list-style: none; display: flex; flex-wrap: wrap; gap: 4px; margin: 10px 0 0; padding: 0; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 12px;
         background: #eceae5; color: #454a53; white-space: nowrap; }
.badge.ran { background: #dcefe2; color: #1c6b3a; }
.badge.cached { background: #e6e9f0; color: #4a5468; }
.badge.failed { background: #f8dcdc; color: #a02828; font-weight: 600; }
.badge.skipped { background: #f6ead0; color: #86610f; }
.scores { list-style: none; display: flex; flex-wrap: wrap; gap: 4px; margin: 8px 0 0; padding: 0; }
.scores:empty { display: none; }
.score { display: inline-block; padding: 1px 8px; border-radius: 4px; font-size: 12px; white-space: nowrap;
         background: #e3f1e7; color: #1c6b3a; font-variant-numeric: tabular-nums; }
.score.low, .score.outlier { background: #d64545; color: #fff; font-weight: 600; }
@media print { body { background: #fff; } header { background: #fff; color: #000; } .card { break-inside: avoid; } }
""".replace("FONTS", FONTS)

# Fills the badges from report.js when the build wrote one; without it the page shows no statuses.
SCRIPT = """
(function () {
  var report = window.FANREN_REPORT;
  if (!report || !report.nodes) { return; }
  var cards = {};
  document.querySelectorAll(".card").forEach(function (card) { cards[card.dataset.shot] = card; });
  function shotOf(node) {
    var parts = node.id.split(":");
    if (["keyframe", "clip", "shot", "line"].indexOf(parts[0]) < 0 || parts.length < 2) { return null; }
    return parts[0] === "line" ? parts.slice(1, -1).join(":") : parts.slice(1).join(":");
  }
  function badge(node) {
    var item = document.createElement("li");
    item.className = "badge " + node.status;
    var what = node.kind === "line" ? "line " + node.id.split(":").pop() : node.id.split(":")[0];
    item.textContent = what + " · " + node.engine + " · " + node.status;
    item.title = node.id + (typeof node.seconds === "number" ? " — " + node.seconds.toFixed(1) + " s" : "");
    return item;
  }
  var counts = {};
  report.nodes.forEach(function (node) {
    counts[node.status] = (counts[node.status] || 0) + 1;
    var card = cards[shotOf(node)];
    var list = card ? card.querySelector(".nodes") : document.getElementById("others");
    list.appendChild(badge(node));
    if (card && node.status === "failed") { card.classList.add("failed"); }
  });
  // the consistency check: one badge per character a keyframe shows, red when flagged
  var consistency = report.consistency;
  Object.keys((consistency && consistency.characters) || {}).forEach(function (id) {
    var character = consistency.characters[id];
    character.shots.forEach(function (shot) {
      var card = cards[shot.shot];
      if (!card) { return; }
      var item = document.createElement("li");
      item.className = "score" + (shot.below ? " low" : "") + (shot.outlier ? " outlier" : "");
      item.textContent = character.name + " " + shot.similarity.toFixed(2);
      item.title = id + ": similarity to the sheet " + shot.similarity + " (threshold " + consistency.threshold
        + "), z " + shot.z + ", to the other shots " + shot.to_centroid + " (z " + shot.z_centroid + ")";
      card.querySelector(".scores").appendChild(item);
    });
  });
  var meta = document.getElementById("build");
  var parts = [];
  if (report.profile) { parts.push(meta.dataset.profile + ": " + report.profile); }
  Object.keys(counts).sort().forEach(function (status) { parts.push(counts[status] + " " + status); });
  meta.textContent = parts.join(" · ");
})();
"""

PAGE = """<!doctype html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · storyboard</title>
<style>{style}</style>
</head>
<body>
<header>
  <h1>{title}</h1>
  <p class="meta"><span>{count} {shots_label}</span><span>{total}</span><span id="build" data-profile="{profile_label}"></span></p>
  <ul id="others" class="nodes" aria-label="{nodes_label}"></ul>
</header>
<main>
{cards}
</main>
<script src="report.js"></script>
<script>{script}</script>
</body>
</html>
"""
