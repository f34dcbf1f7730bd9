"""OpenTimelineIO: the timeline as an .otio file, and as FCP 7 XML through OTIO's `fcp_xml`
adapter (the otio-fcp-adapter package) for Premiere Pro and DaVinci Resolve.

Tracks: "Shots" (video), "Speech" and "Music" (audio), gaps between the clips; the subtitles are
markers on the timeline's stack, each over its cue's time, named by its text. Picture items are
timed at the drama's frame rate, sound items at 48 kHz (the sample the episode places them at) in
the .otio file; FCP 7 XML counts everything in frames of one timebase (`fcp_timebase`).
Media are ExternalReferences to paths relative to out/<profile>/ (the folder the .otio file is in).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

from .timeline import Item, Timeline

AUDIO_RATE = 48000


def to_otio(timeline: Timeline, sound_rate: int = AUDIO_RATE, picture_rate: int | None = None) -> Any:
    """The OTIO timeline: picture items timed at `picture_rate` (default: the drama's fps), sound
    items at `sound_rate`."""
    import opentimelineio as otio

    def time(seconds: Fraction, rate: int) -> Any:
        return otio.opentime.RationalTime(round(seconds * rate), rate)

    def track(name: str, kind: str, items: list[Item], rate: int) -> Any:
        out = otio.schema.Track(name=name, kind=kind)
        position = Fraction(0)
        for item in items:
            if item.start > position:
                out.append(otio.schema.Gap(source_range=otio.opentime.TimeRange(
                    time(Fraction(0), rate), time(item.start - position, rate))))
            span = otio.opentime.TimeRange(time(Fraction(0), rate), time(item.duration, rate))
            out.append(otio.schema.Clip(
                name=item.name,
                media_reference=otio.schema.ExternalReference(target_url=item.media, available_range=span),
                source_range=span,
                metadata={"fanren": {"volume": item.volume}} if item.volume != 1.0 else {}))
            position = item.end
        return out

    fps = picture_rate or timeline.fps
    result = otio.schema.Timeline(name=timeline.title,
                                  global_start_time=otio.opentime.RationalTime(0, fps))
    result.metadata["fanren"] = {"fps": timeline.fps, "size": list(timeline.size)}
    result.tracks.append(track("Shots", otio.schema.TrackKind.Video, timeline.shots, fps))
    result.tracks.append(track("Speech", otio.schema.TrackKind.Audio, timeline.lines, sound_rate))
    if timeline.music:
        result.tracks.append(track("Music", otio.schema.TrackKind.Audio, timeline.music, sound_rate))
    for cue in timeline.subtitles:
        result.tracks.markers.append(otio.schema.Marker(
            name=cue.text,
            marked_range=otio.opentime.TimeRange(time(cue.start, fps), time(cue.end - cue.start, fps)),
            metadata={"fanren": {"subtitle": cue.text, "who": cue.who,
                                 "start": float(cue.start), "end": float(cue.end)}}))
    return result


def write_otio(timeline: Timeline, out: Path) -> Path:
    import opentimelineio as otio

    out.write_text(otio.adapters.write_to_string(to_otio(timeline), "otio_json"), encoding="utf-8")
    return out


def write_fcpxml(timeline: Timeline, out: Path) -> Path:
    import opentimelineio as otio

    rate = fcp_timebase(timeline.fps)
    out.write_text(otio.adapters.write_to_string(to_otio(timeline, rate, rate), "fcp_xml"), encoding="utf-8")
    return out


def fcp_timebase(fps: int) -> int:
    """The timebase FCP 7 XML is written at. The adapter gives every file a SMPTE start timecode,
    defined at 24, 25, 30, 48, 50 and 60 fps only: the drama's fps when it is one of them, else
    the smallest of them that is a multiple of it (12 → 24, every frame two), else 60."""
    smpte = (24, 25, 30, 48, 50, 60)
    return next((rate for rate in smpte if rate % fps == 0), 60)
