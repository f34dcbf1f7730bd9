"""The review page: each changed character sheet and shot side by side, older revision left, newer right.

An HTML file with its media in a folder beside it (`diff.html`, `diff_files/`): keyframes and shot
videos are copied from the cache (hard links where the file system allows), never rendered here, so
a reviewer downloads one artifact and opens the page from disk. A shot's text (action, camera, the
spoken lines) is diffed word by word (character by character for CJK) with difflib.

A series' page has a section per episode holding its changed sheets and shots, after a section of
the sheets the episodes share (series.toml's characters and looks).
"""

from __future__ import annotations

import difflib
import html
import os
import re
import shutil
from pathlib import Path

from ..cache import atomic_write
from .compare import ADDED, INPUT, REMOVED, NodeDiff
from .review import (
    CharacterChange,
    CharacterSide,
    Review,
    ShotChange,
    ShotSide,
    by_episode,
    characters,
    shots,
)

NOT_RENDERED = "not rendered — run with --build"
NOT_THERE = "not in this revision"

# a CJK character is a word of its own; otherwise runs of letters/digits, runs of spaces, or one sign
TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]|\w+|\s+|.", re.UNICODE)


def write_page(review: Review, target: Path) -> Path:
    """Write the page to `target` and its media to `<stem>_files/` beside it; returns the page."""
    target = Path(target)
    assets = target.with_name(f"{target.stem}_files")
    if assets.exists():
        shutil.rmtree(assets)
    assets.mkdir(parents=True)
    changed = shots(review)
    sheets = characters(review)
    if review.is_series:
        sections = _episode_sections(review, sheets, changed, assets)
    else:
        sections = "\n".join([*(_character_section(review, c, assets) for c in sheets),
                              *(_shot_section(review, shot, assets) for shot in changed)])
    shown = {d.node_id for s in changed for d in s.nodes} | {c.diff.node_id for c in sheets}
    others = [d for d in review.comparison.differences if d.node_id not in shown]
    title = f"{review.before.label} → {review.after.label}"
    page = PAGE.format(
        title=html.escape(f"fanren diff: {title}"),
        heading=html.escape(title),
        summary=html.escape(_summary(review)),
        before=html.escape(review.before.label),
        after=html.escape(review.after.label),
        nodes="\n".join(_node_row(d) for d in review.comparison.differences) or
              '<tr><td colspan="3">no node differs</td></tr>',
        others=len(others),
        shots=sections or '<p class="none">no character or shot differs</p>',
        style=STYLE,
    )
    atomic_write(target, page, durable=False)
    return target


def text_diff(before: list[str], after: list[str]) -> tuple[str, str]:
    """Two HTML fragments, one line a row: removed words in <del> on the left, added in <ins> on the right."""
    left: list[str] = []
    right: list[str] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, before, after, autojunk=False).get_opcodes():
        if op == "equal":
            left += [_line(html.escape(t)) for t in before[i1:i2]]
            right += [_line(html.escape(t)) for t in after[j1:j2]]
            continue
        old, new = before[i1:i2], after[j1:j2]
        for n in range(max(len(old), len(new))):
            if n < len(old) and n < len(new):
                a, b = _words(old[n], new[n])
                left.append(_line(a, "changed"))
                right.append(_line(b, "changed"))
            elif n < len(old):
                left.append(_line(f"<del>{html.escape(old[n])}</del>", "removed"))
            else:
                right.append(_line(f"<ins>{html.escape(new[n])}</ins>", "added"))
    return "\n".join(left), "\n".join(right)


def _words(before: str, after: str) -> tuple[str, str]:
    old, new = TOKEN.findall(before), TOKEN.findall(after)
    left: list[str] = []
    right: list[str] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        a, b = html.escape("".join(old[i1:i2])), html.escape("".join(new[j1:j2]))
        if op == "equal":
            left.append(a)
            right.append(b)
            continue
        if a:
            left.append(f"<del>{a}</del>")
        if b:
            right.append(f"<ins>{b}</ins>")
    return "".join(left), "".join(right)


def _line(content: str, state: str = "same") -> str:
    return f'<div class="line {state}">{content or "&nbsp;"}</div>'


def _summary(review: Review) -> str:
    differences = review.comparison.differences
    count = {status: sum(1 for d in differences if d.status == status) for status in (ADDED, REMOVED)}
    return (f"profile {review.profile}: {len(differences)} of {review.comparison.node_count} nodes differ "
            f"({count[ADDED]} added, {count[REMOVED]} removed)")


def _why(diff: NodeDiff) -> str:
    """The fields that differ (`params.action`), or for an input-changed node the inputs it reads."""
    if diff.status == INPUT:
        return "reads " + ", ".join(diff.changed_inputs)
    return ", ".join(c.path for c in diff.changes)


def _node_row(diff: NodeDiff) -> str:
    return (f'<tr class="{diff.status}"><td>{html.escape(diff.status)}</td><td>{html.escape(diff.node_id)}</td>'
            f"<td>{html.escape(_why(diff))}</td></tr>")


def _episode_sections(review: Review, sheets: list[CharacterChange], changed: list[ShotChange],
                      assets: Path) -> str:
    """The shared sheets' section, then one per episode with its own sheets and its shots."""
    counts = {episode: len(diffs) for episode, diffs in by_episode(review)}
    groups: list[str] = []
    for episode in [None, *review.episodes()]:
        inner = [*(_character_section(review, c, assets) for c in sheets if c.episode == episode),
                 *(_shot_section(review, shot, assets) for shot in changed if shot.episode == episode)]
        if not inner:
            continue
        if episode is None:
            opening = '<section class="episode shared" id="shared">'
            heading = "shared by the episodes"
        else:
            eid = html.escape(episode)
            opening = f'<section class="episode" id="episode-{eid}" data-episode="{eid}">'
            heading = f"{episode} · {review.title_of(episode)}"
        count = counts.get(episode, 0)
        differ = "1 node differs" if count == 1 else f"{count} nodes differ"
        title = f'<h2 class="episode">{html.escape(heading)} <span class="status">{differ}</span></h2>'
        groups.append("\n".join([opening, title, *inner, "</section>"]))
    return "\n".join(groups)


def _anchor(kind: str, local_id: str, episode: str | None) -> str:
    return html.escape(f"{episode}-{kind}-{local_id}" if episode else f"{kind}-{local_id}")


def _shot_section(review: Review, shot: ShotChange, assets: Path) -> str:
    left, right = text_diff(shot.before.text if shot.before else [], shot.after.text if shot.after else [])
    reasons = "".join(f"<li>{_node_row_text(d)}</li>" for d in shot.nodes)
    return SECTION.format(
        kind="shot", id=html.escape(shot.shot_id), anchor=_anchor("shot", shot.shot_id, shot.episode),
        heading=f"shot {html.escape(shot.shot_id)}", status=html.escape(shot.status), reasons=reasons,
        before=_side(shot.before, left, review.before.label, "before", assets),
        after=_side(shot.after, right, review.after.label, "after", assets),
    )


def _character_section(review: Review, character: CharacterChange, assets: Path) -> str:
    left, right = text_diff(character.before.text if character.before else [],
                            character.after.text if character.after else [])

    def side(look: CharacterSide | None, text: str, label: str, which: str) -> str:
        if look is None:
            return f'<div class="side {which}"><h3>{html.escape(label)}</h3><div class="missing">{NOT_THERE}</div></div>'
        image = _asset(look.image, assets)
        picture = (f'<img class="sheet" alt="character sheet" src="{image}">' if image else
                   f'<div class="missing sheet">character sheet {NOT_RENDERED}</div>')
        return (f'<div class="side {which}"><h3>{html.escape(label)}</h3><div class="media">{picture}</div>'
                f'<div class="text">{text}</div></div>')

    return SECTION.format(
        kind="character", id=html.escape(character.character_id),
        anchor=_anchor("character", character.character_id, character.episode),
        heading=f"character {html.escape(character.character_id)}", status=html.escape(character.diff.status),
        reasons=f"<li>{_node_row_text(character.diff)}</li>",
        before=side(character.before, left, review.before.label, "before"),
        after=side(character.after, right, review.after.label, "after"))


def _node_row_text(diff: NodeDiff) -> str:
    why = _why(diff)
    return f"<b>{html.escape(diff.node_id)}</b> {html.escape(diff.status)}" + (f": {html.escape(why)}" if why else "")


def _side(side: ShotSide | None, text: str, label: str, which: str, assets: Path) -> str:
    if side is None:
        return f'<div class="side {which}"><h3>{html.escape(label)}</h3><div class="missing">{NOT_THERE}</div></div>'
    keyframe = _asset(side.keyframe, assets)
    video = _asset(side.video, assets)
    picture = (f'<img class="keyframe" alt="keyframe" src="{keyframe}">' if keyframe else
               f'<div class="missing keyframe">keyframe {NOT_RENDERED}</div>')
    poster = f' poster="{keyframe}"' if keyframe else ""
    note = '<p class="note">the clip, silent: the shot video is not rendered</p>' if side.video_is_clip else ""
    clip = (f'<figure><video class="clip" controls preload="metadata"{poster} src="{video}"></video>{note}</figure>'
            if video else f'<div class="missing clip">video {NOT_RENDERED}</div>')
    return (f'<div class="side {which}"><h3>{html.escape(label)}</h3><div class="media">{picture}{clip}</div>'
            f'<div class="text">{text}</div></div>')


def _asset(file: Path | None, assets: Path) -> str | None:
    """`file` (a cache object) placed in the assets folder; its path relative to the page."""
    if file is None:
        return None
    with open(file, "rb") as f:  # objects are named by digest: the suffix comes from the bytes
        suffix = ".png" if f.read(8) == b"\x89PNG\r\n\x1a\n" else ".mp4"
    target = assets / f"{file.parent.name}{file.name}{suffix}"
    if not target.exists():
        try:
            os.link(file, target)
        except OSError:
            shutil.copyfile(file, target)
    return f"{assets.name}/{target.name}"


STYLE = """
body { font-family: "Noto Sans CJK SC", system-ui, sans-serif; margin: 1.5rem; color: #1d1d1f; background: #fafafa; }
h1 { font-size: 1.3rem; } .summary { color: #555; }
table.nodes { border-collapse: collapse; margin: 1rem 0; font-size: .9rem; }
table.nodes td { border-bottom: 1px solid #ddd; padding: .2rem .6rem; vertical-align: top; }
tr.added td:first-child { color: #1a7f37; } tr.removed td:first-child { color: #cf222e; }
tr.changed td:first-child { color: #9a6700; } tr.input-changed td:first-child { color: #777; }
section.shot, section.character { background: #fff; border: 1px solid #ddd; border-radius: 6px; margin: 1.2rem 0; padding: .8rem 1rem; }
section h2 { font-size: 1.1rem; margin: 0 0 .4rem; } .status { font-weight: normal; color: #777; }
ul.reasons { font-size: .85rem; color: #444; margin: 0 0 .6rem; }
.sides { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; }
.side h3 { font-size: .95rem; margin: 0 0 .4rem; } .side.before h3 { color: #cf222e; } .side.after h3 { color: #1a7f37; }
.media { display: grid; grid-template-columns: 1fr 1fr; gap: .5rem; margin-bottom: .5rem; align-items: start; }
.media figure { margin: 0; } .note { font-size: .8rem; color: #777; margin: .2rem 0 0; }
.side img.keyframe, .side img.sheet, .side video.clip { display: block; width: 100%; background: #000; }
.missing { display: flex; align-items: center; justify-content: center; min-height: 6rem; text-align: center;
  border: 2px dashed #bbb; color: #777; font-size: .9rem; padding: .3rem; }
.text { font-size: .95rem; line-height: 1.5; } .line { padding: 0 .3rem; }
.line.changed, .line.removed, .line.added { background: #fff8c5; }
section.episode { border-top: 3px solid #1d1d1f; margin: 2rem 0 1rem; padding-top: .5rem; }
h2.episode { font-size: 1.25rem; }
del { background: #ffcecb; text-decoration: line-through; } ins { background: #aceebb; text-decoration: none; }
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{style}</style></head>
<body>
<h1>{heading}</h1>
<p class="summary">{summary}</p>
<table class="nodes"><tbody>
{nodes}
</tbody></table>
<p class="legend">left: <b>{before}</b> · right: <b>{after}</b> · {others} node(s) outside the characters and shots (subtitles, episode, storyboard) are listed above only</p>
{shots}
</body></html>
"""

SECTION = """<section class="{kind} {status}" id="{anchor}" data-{kind}="{id}">
<h2>{heading} <span class="status">{status}</span></h2>
<ul class="reasons">{reasons}</ul>
<div class="sides">{before}{after}</div>
</section>"""
