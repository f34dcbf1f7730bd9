"""The export engine: an editor timeline (OpenTimelineIO, FCP 7 XML, a Jianying draft) of the
episode, one node per format (fanren/export/ holds the timeline model and the writers).

An export writes no media: it references the shots, the lines' speech and the music by paths
relative to out/<profile>/, where the build places them (fanren/export/materialize.py).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import EngineError
from .base import Engine, Request


class ExportEngine(Engine):
    family = "export"
    name = "export"
    version = "1"
    kinds = frozenset({"export"})
    options_known = frozenset[str]()

    def run(self, request: Request) -> dict[str, Path]:
        from ..export import media_line, media_music, media_shot
        from ..export.timeline import build_timeline

        timeline = build_timeline(request)
        fmt = request.params["format"]
        if fmt == "otio":
            from ..export.otio import write_otio

            return {"episode.otio": write_otio(timeline, request.out_dir / "episode.otio")}
        if fmt == "fcpxml":
            from ..export.otio import write_fcpxml

            return {"episode.xml": write_fcpxml(timeline, request.out_dir / "episode.xml")}
        if fmt == "jianying":
            from ..export.jianying import write_draft

            media: dict[str, Path] = {}
            for node, files in request.inputs.items():
                if node.startswith("shot:"):
                    media[media_shot(node.split(":", 1)[1])] = Path(files["shot.mp4"])
                elif node.startswith("line:"):
                    media[media_line(node)] = Path(files["speech.wav"])
            for file, path in request.sources.items():
                media[media_music(file)] = Path(path)
            return write_draft(timeline, media, request.out_dir)
        raise EngineError(f"the export engine cannot write format {fmt!r}")
