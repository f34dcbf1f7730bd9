"""A Jianying (剪映) draft, written with pyJianYingDraft: draft_content.json and
draft_meta_info.json, the two files of a draft folder.

Tracks: "镜头" (the shots, video, their own sound muted), "台词" (each line's speech), "音乐"
(the music at its volume) and "字幕" (each subtitle cue an editable text segment), so an editor
can retime a line or restyle a subtitle in Jianying. Times are microseconds, as Jianying counts.

Two things keep the draft byte-for-byte repeatable: pyJianYingDraft names every material, segment
and track with a random uuid4, so the ids are replaced by ones derived from their order of
appearance; and media are written as paths relative to out/<profile>/ (`materialize` makes them
absolute for the machine the draft is placed on, as Jianying needs).
"""

from __future__ import annotations

import json
import re
from fractions import Fraction
from pathlib import Path
from typing import Any

import xxhash

from .timeline import Timeline

SEC = 1_000_000
# pyJianYingDraft's ids: uuid4().hex, and str(uuid4()) (upper- or lower-case)
_ID = re.compile(r"\b(?:[0-9a-fA-F]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\b")
# mediainfo gives a file's length rounded to the millisecond: a line a few microseconds longer than
# its WAV by that count is cut to it, not followed by a sliver of itself
LOOP_SLACK = 50_000
SUBTITLE_SIZE = 7.0  # Jianying's own text size unit (its default is 8, a little large for two rows)


def us(seconds: Fraction) -> int:
    return round(seconds * SEC)


def write_draft(timeline: Timeline, media_files: dict[str, Path], out_dir: Path) -> dict[str, Path]:
    """draft_content.json and draft_meta_info.json in out_dir; `media_files` maps each media path
    of the timeline to a file with its content (read for its size, length and streams)."""
    import pyJianYingDraft as draft

    width, height = timeline.size
    script = draft.ScriptFile(width, height, timeline.fps, maintrack_adsorb=False)
    shots = script.append_track(draft.TrackSpec(draft.TrackType.video, "镜头"))
    speech = script.append_track(draft.TrackSpec(draft.TrackType.audio, "台词"))
    music = script.append_track(draft.TrackSpec(draft.TrackType.audio, "音乐")) if timeline.music else None
    text = script.append_track(draft.TrackSpec(draft.TrackType.text, "字幕")) if timeline.subtitles else None

    videos: dict[str, Any] = {}
    audios: dict[str, Any] = {}
    for shot in timeline.shots:
        material = videos.setdefault(shot.media, draft.VideoMaterial(
            str(media_files[shot.media]), material_name=Path(shot.media).name))
        # the shot's own sound is its lines mixed; they are on the speech track, one segment each
        script.add_segment(draft.VideoSegment(material, _span(shot.start, shot.duration, material.duration),
                                              volume=0.0), shots)
    for track, items in ((speech, timeline.lines), (music, timeline.music)):
        for item in items:
            material = audios.setdefault(item.media, draft.AudioMaterial(
                str(media_files[item.media]), material_name=Path(item.media).name))
            # music shorter than its scenes plays again from its start, as the episode loops it
            start, end = us(item.start), us(item.end)
            while end - start > LOOP_SLACK:
                length = min(end - start, material.duration)
                script.add_segment(draft.AudioSegment(material, draft.Timerange(start, length),
                                                      volume=item.volume), track)
                start += length
    for cue in timeline.subtitles:
        script.add_segment(draft.TextSegment(
            cue.text, draft.Timerange(us(cue.start), us(cue.end) - us(cue.start)),
            style=draft.TextStyle(size=SUBTITLE_SIZE, align=1, auto_wrapping=True),
            border=draft.TextBorder(),
            clip_settings=draft.ClipSettings(transform_y=-0.8)), text)

    content = json.loads(script.dumps())
    relative = {str(Path(file).absolute()): media for media, file in media_files.items()}
    for kind in ("videos", "audios"):
        for material in content["materials"].get(kind, []):
            material["path"] = relative.get(material["path"], material["path"])
    content["duration"] = us(timeline.duration)

    from pyJianYingDraft import assets

    meta = json.loads(Path(assets.get_asset_path("DRAFT_META_TEMPLATE")).read_text(encoding="utf-8"))
    meta.update({"draft_name": timeline.title, "tm_duration": us(timeline.duration)})
    # one id map over both files: the draft id and every material, segment and track id
    ids: dict[str, str] = {}
    files = {"draft_content.json": content, "draft_meta_info.json": meta}
    written: dict[str, Path] = {}
    for name, document in files.items():
        text_out = _stable_ids(json.dumps(document, ensure_ascii=False, indent=1), ids)
        path = out_dir / name
        path.write_text(text_out + "\n", encoding="utf-8")
        written[name] = path
    return written


def _span(start: Fraction, duration: Fraction, available: int | None) -> Any:
    """A Timerange in microseconds, no longer than the material (which mediainfo gives rounded to
    the millisecond)."""
    import pyJianYingDraft as draft

    length = us(start + duration) - us(start)  # so that one item ends exactly where the next starts
    if available is not None:
        length = min(length, available)
    return draft.Timerange(us(start), length)


def _stable_ids(text: str, ids: dict[str, str]) -> str:
    """Every uuid in `text` replaced by one derived from the order the uuids first appear in, in
    the same form (32 hex digits, or 8-4-4-4-12 in the same case)."""

    def replace(match: re.Match[str]) -> str:
        old = match.group(0)
        key = old.replace("-", "").lower()
        new = ids.setdefault(key, xxhash.xxh128_hexdigest(f"fanren-jianying:{len(ids)}".encode()))
        if "-" in old:
            new = f"{new[:8]}-{new[8:12]}-{new[12:16]}-{new[16:20]}-{new[20:]}"
        return new.upper() if any(c in "ABCDEF" for c in old) else new

    return _ID.sub(replace, text)
