"""Placing the exports and the media they reference under out/<profile>/, from the cache.

    out/<profile>/episode.otio, episode.xml       OpenTimelineIO, FCP 7 XML
    out/<profile>/jianying/                       the Jianying draft folder
    out/<profile>/media/shots/<shot>.mp4          each shot's picture, without burned subtitles
    out/<profile>/media/lines/<shot>-<n>.wav      each line's speech
    out/<profile>/media/music/<path in the drama> the music files

The media are hard links into the content store where it can (copies elsewhere), as episode.mp4
is. OTIO and FCP XML reference them relatively, so the out folder can move; the Jianying draft
gets absolute paths here, because Jianying resolves no other (a build places them again).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from ..cache import atomic_write
from . import MEDIA, OUTPUTS, media_line, media_music, media_shot

if TYPE_CHECKING:
    from ..build import Session
    from ..graph import Node
    from ..run import NodeResult


def place_exports(out_dir: Path, session: Session, results: dict[str, NodeResult], exports: list[Node],
                  prefix: str = "") -> None:
    """The files of `exports` (a drama's or one episode's export nodes) and the media they reference,
    once every one has finished; media no export of this build references any more are removed from
    out/<profile>/media/. In a series, `prefix` is the episode's (`ep01/`): its exports name their
    inputs by their ids within the episode."""
    finished = [node for node in exports
                if (r := results.get(node.id)) is not None and r.record is not None]
    if len(finished) < len(exports):
        return  # a failed or skipped export (or one of its inputs): keep what the last build placed
    media: dict[str, Path] = {}
    for node in exports:
        for shot in node.params["shots"]:
            picture, output = shot["picture"]
            media[media_shot(shot["id"])] = _output(session, results, prefix + picture, output)
            for line in shot["lines"]:
                media[media_line(line["node"])] = _output(session, results, prefix + line["node"], "speech.wav")
        for entry in node.params["music"]:
            media[media_music(entry["file"])] = session.root / entry["file"]
    for name, source in media.items():
        place(source, out_dir / name, link=source.is_relative_to(session.cache.root))
    _remove_unreferenced(out_dir / MEDIA, {out_dir / name for name in media})

    for node in exports:
        fmt = node.params["format"]
        for output, name in OUTPUTS[fmt].items():
            source = _output(session, results, node.id, output)
            target = out_dir / name
            if fmt == "jianying":
                text = _localize_draft(output, source.read_text(encoding="utf-8"), out_dir)
                if not (target.is_file() and target.read_text(encoding="utf-8") == text):
                    target.parent.mkdir(parents=True, exist_ok=True)
                    atomic_write(target, text, durable=False)
            else:
                place(source, target, link=True)


def _output(session: Session, results: dict[str, NodeResult], node_id: str, output: str) -> Path:
    record = results[node_id].record
    assert record is not None
    return session.cache.object_for_use(record, output)


def place(source: Path, target: Path, link: bool) -> None:
    """`target` with the content of `source`: a hard link into the store (else a copy), or a copy
    of a drama file (a link would let an editor's change reach the drama folder)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        if link and target.exists() and os.path.samefile(source, target):
            return
    except OSError:
        pass
    if not link and target.exists():
        ours, theirs = target.stat(), source.stat()
        if (ours.st_size, ours.st_mtime_ns) == (theirs.st_size, theirs.st_mtime_ns):
            return  # copied with its modification time (copy2) and unchanged since
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.unlink(missing_ok=True)
    if link:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
    else:
        shutil.copy2(source, tmp)
    os.replace(tmp, target)


def _remove_unreferenced(folder: Path, keep: set[Path]) -> None:
    if not folder.is_dir():
        return
    for path in sorted(folder.rglob("*"), reverse=True):  # files before the folders holding them
        if path.is_file() and path not in keep:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def _localize_draft(output: str, text: str, out_dir: Path) -> str:
    """The cached draft (media relative to out/<profile>/) with absolute paths of this machine."""
    document = json.loads(text)
    base = out_dir.resolve()
    if output == "draft_content.json":
        for kind in ("videos", "audios"):
            for material in document["materials"].get(kind, []):
                material["path"] = str(base / material["path"])
    else:
        document["draft_fold_path"] = str(base / "jianying")
        document["draft_root_path"] = str(base)
    return json.dumps(document, ensure_ascii=False, indent=1) + "\n"
