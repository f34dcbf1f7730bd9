"""Editor exports: one timeline model (timeline.py), written as OpenTimelineIO, FCP 7 XML and a
Jianying (剪映) draft, one module per format (otio.py, jianying.py).

An export references its media by paths relative to out/<profile>/ (MEDIA and the `media_*`
functions below); `materialize.py` places those files there from the cache, as the build places
episode.mp4. report.py writes the same timeline model into report.json (every finished build);
the writers (and their libraries) are imported only by a build that exports.
"""

from __future__ import annotations

FORMATS = ("otio", "fcpxml", "jianying")

# The Python distributions each format is written with: their versions go into the export's key.
LIBRARIES: dict[str, tuple[str, ...]] = {
    "otio": ("opentimelineio",),
    "fcpxml": ("opentimelineio", "otio-fcp-adapter"),
    "jianying": ("pyjianyingdraft",),
}

# What each format's node writes (its output names) and where out/<profile>/ holds them.
OUTPUTS: dict[str, dict[str, str]] = {
    "otio": {"episode.otio": "episode.otio"},
    "fcpxml": {"episode.xml": "episode.xml"},
    "jianying": {"draft_content.json": "jianying/draft_content.json",
                 "draft_meta_info.json": "jianying/draft_meta_info.json"},
}

MEDIA = "media"


def media_shot(shot_id: str) -> str:
    return f"{MEDIA}/shots/{shot_id}.mp4"


def media_line(line_node: str) -> str:
    """line:s01:0 → media/lines/s01-0.wav"""
    _, shot_id, n = line_node.split(":")
    return f"{MEDIA}/lines/{shot_id}-{n}.wav"


def media_music(file: str) -> str:
    """A music file by its drama-relative path, under media/music/."""
    return f"{MEDIA}/music/{file}"


def parse_formats(text: str) -> list[str]:
    """`--format otio,fcpxml`: the formats in the order given, each once; UsageError (exit 2) for
    one fanren does not write, with the closest and all of them."""
    import difflib

    from ..errors import UsageError

    formats = [name.strip() for name in text.split(",") if name.strip()]
    if not formats:
        raise UsageError(f"--format: expected one or more of {', '.join(FORMATS)}, comma-separated, got {text!r}")
    for name in formats:
        if name not in FORMATS:
            close = difflib.get_close_matches(name, FORMATS, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UsageError(f"--format: unknown format {name!r} ({hint}formats: {', '.join(FORMATS)})")
    return list(dict.fromkeys(formats))
