"""The export engine: an editor timeline (OpenTimelineIO, FCP 7 XML, a Jianying draft) of the
episode, one node per format (fanren/export/ holds the timeline model and the writers), and, when
the shots burn their subtitles in, each shot's picture without them.

An export writes no media: it references the shots' pictures, the lines' speech and the music by
paths relative to out/<profile>/, where the build places them (fanren/export/materialize.py).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import EngineError
from ..media import run_ffmpeg
from .base import Engine, Request


class ExportEngine(Engine):
    family = "export"
    name = "export"
    version = "1"
    kinds = frozenset({"export", "picture"})
    options_known = frozenset[str]()
    encodes = True  # the pictures are x264, encoded as the shots are

    def run(self, request: Request) -> dict[str, Path]:
        if request.kind == "picture":
            return render_picture(request)
        if request.kind != "export":
            raise EngineError(f"the export engine cannot render a {request.kind!r} node "
                              f"(it renders {', '.join(sorted(self.kinds))})")
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
            for shot in request.params["shots"]:
                node, output = shot["picture"]
                media[media_shot(shot["id"])] = Path(request.input_file(node, output))
                for line in shot["lines"]:
                    media[media_line(line["node"])] = Path(request.input_file(line["node"], "speech.wav"))
            for file, path in request.sources.items():
                media[media_music(file)] = Path(path)
            return write_draft(timeline, media, request.out_dir)
        raise EngineError(f"the export engine cannot write format {fmt!r}")


def render_picture(request: Request) -> dict[str, Path]:
    """picture.mp4: the shot's clip fitted to the shot exactly as the shot's mux fits it (the same
    filter chain and x264 settings), without its subtitles and without sound.

    params: shot_id, size, fps, fit, max_slow, motion; inputs: clip:<shot> → {clip.mp4},
    shot:<shot> → {timing.json} (the shot's length, which its lines decide).
    """
    import json

    from .mux import BITEXACT, clip_timing, fit_clip, shot_video_codec

    params = request.params
    width, height = (int(v) for v in params["size"])
    fps = int(params["fps"])
    shot_id = str(params["shot_id"])
    clip = Path(request.input_file(f"clip:{shot_id}", "clip.mp4"))
    duration = float(json.loads(Path(request.input_file(f"shot:{shot_id}", "timing.json"))
                                .read_text(encoding="utf-8"))["duration"])
    frames = round(duration * fps)
    fit = str(params["fit"])
    clip_seconds, clip_fps = clip_timing(clip)
    video = fit_clip(fit, clip_seconds, duration, float(params["max_slow"]), frames, (width, height), fps,
                     motion=str(params["motion"]), clip_fps=clip_fps)
    clip_input = ["-stream_loop", "-1", "-i", str(clip)] if fit == "loop" else ["-i", str(clip)]
    out = request.out_dir / "picture.mp4"
    run_ffmpeg([*clip_input, "-filter_complex", f"[0:v]{video}[v]", "-map", "[v]", "-an",
                *shot_video_codec(fps), *BITEXACT, str(out)], f"rendering the picture of shot {shot_id}")
    return {"picture.mp4": out}
