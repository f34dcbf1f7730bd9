"""The engine protocol: identity, resources, load(), run(request) -> outputs, unload().

An engine turns a request into files. It writes only into `request.out_dir` (a temp dir on the
cache's filesystem); the cache validates what it wrote and commits it. An engine never touches the
cache, drama.toml or out/.

What each node kind asks of its engine (the params are exactly what is hashed into the key):

character (image)  params: character_id, name, description, style, prompt, seed, size [w, h], language,
                   reference (the drama-relative path of the user's reference image, or null)
                   sources: {that path → the file}; sources are always keyed by drama-relative path
                   outputs: image.png (exactly size)
keyframe  (image)  params: shot_id, scene_id, setting, characters [{id, name, description}], action,
                   camera, style, prompt, seed, size [w, h], language
                   inputs:  character:<id> → {image.png} for each character in the shot
                   outputs: image.png (exactly size)
clip      (video)  params: shot_id, prompt, seed, size [w, h], fps
                   inputs:  keyframe:<shot> → {image.png}
                   outputs: clip.mp4 (size, the engine's native frames and fps, no audio)
line      (voice)  params: text, sentences [str], speaker, voice {engine-specific name or table, speed},
                   language
                   sources: files a voice names (a CosyVoice prompt wav)
                   outputs: speech.wav, cues.json ([{text, start, end}] seconds into speech.wav,
                            one per sentence)
shot      (mux)    params: shot_id, size, fps, pause, lead_in, min_seconds, fit, max_slow,
                   motion (interpolate|duplicate: how a clip below fps, once slowed, reaches fps),
                   subtitles (burn|soft|none), font, language, lines [{node, who, text}]
                   inputs:  clip:<shot> → {clip.mp4}; line:<shot>:<n> → {speech.wav, cues.json}
                   outputs: shot.mp4 (the episode's final pictures for this shot: size, fps, yuv420p
                            h264 encoded with the same settings for every shot and starting on a
                            keyframe, its cues burned in when subtitles is "burn"; 48 kHz stereo AAC),
                            timing.json {duration, cues: [{start, end, text, who}]}
subtitles (mux)    params: size, language, font
                   inputs:  shot:<id> → {timing.json} for every shot, in episode order
                   outputs: episode.srt, episode.ass (the cues burned into the shots, at their places
                            in the episode)
episode   (mux)    params: fps, subtitles (burn|soft|none), loudness {i, tp},
                   music [{shots [shot id], file, volume}] (one entry per scene with music, in
                   episode order; empty for none)
                   inputs:  shot:<id> → {shot.mp4, timing.json} in order; subtitles → {episode.srt, ...}
                   sources: every music file the entries name
                   outputs: episode.mp4 (the shots' video packets copied, not re-encoded; their audio
                            joined, each scene's music mixed under the speech, ducked and faded where
                            it changes, normalised to loudness and encoded once; a mov_text track
                            from episode.srt when subtitles is "soft")
storyboard(report) params: title, language, shots [{id, scene, action, camera, narration, lines}]
                   inputs:  keyframe:<id> → {image.png}; shot:<id> → {timing.json}
                   outputs: storyboard.html (self-contained; statuses and consistency scores come from
                            report.js beside it)
picture (export)   params: shot_id, size, fps, fit, max_slow, motion
                   inputs:  clip:<shot> → {clip.mp4}; shot:<shot> → {timing.json}
                   outputs: picture.mp4 (the clip fitted as the shot fits it, no subtitles, no audio)
export  (export)   params: format (otio|fcpxml|jianying), libraries {distribution: version}, title, fps,
                   size, lead_in, shots [{id, picture [node, output], lines [{node, who, text}]}],
                   music (as the episode's)
                   inputs:  shot:<id> → {timing.json}; each shot's picture (picture:<id> → {picture.mp4},
                            or shot:<id> → {shot.mp4} when the shots burn no subtitles);
                            line:<shot>:<n> → {speech.wav, cues.json}
                   sources: every music file the entries name
                   outputs: episode.otio | episode.xml | draft_content.json and draft_meta_info.json
                            (media referenced by paths relative to out/<profile>/, see fanren/export/)
consistency(check) params: character_id, name, shots [{shot, characters [ids, as the shot lists them]}]
                   inputs:  character:<id> → {image.png} for the character and everyone it shares a shot
                            with; keyframe:<shot> → {image.png} for each shot showing it
                   outputs: consistency.json {character, name, mean_similarity, mean_pairwise,
                            shots [{shot, similarity, to_centroid, z, z_centroid, region [index, of]}]}"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..errors import unknown_option
from ..media import encoder_platform


@dataclass(frozen=True)
class Resources:
    """What an engine needs to run: the CPU, or one GPU with an estimated VRAM need."""

    gpu: bool = False
    vram_gb: float = 0.0


def _no_progress(fraction: float, message: str) -> None:
    return None


@dataclass(frozen=True)
class Request:
    node_id: str
    kind: str
    params: Mapping[str, Any]
    inputs: Mapping[str, Mapping[str, Path]]
    out_dir: Path
    sources: Mapping[str, Path] = field(default_factory=dict)
    progress: Callable[[float, str], None] = _no_progress

    def input_file(self, node_id: str, output: str) -> Path:
        return self.inputs[node_id][output]

    def inputs_of_kind(self, kind: str) -> list[tuple[str, Mapping[str, Path]]]:
        """The inputs whose node id starts with `kind:`, in the order the node lists them."""
        return [(nid, files) for nid, files in self.inputs.items() if nid.split(":", 1)[0] == kind]


class Engine:
    """Base class of every engine. Subclasses set the class variables and implement run()."""

    family: ClassVar[str]            # image | video | voice | mux | report | export | check
    name: ClassVar[str]
    version: ClassVar[str] = "1"     # bump whenever the same request would give other bytes
    kinds: ClassVar[frozenset[str]]  # node kinds this engine renders
    # True for engines that encode with ffmpeg/x264: their bytes depend on the CPU features the
    # encoders may use, so the pinned set (media.encoder_platform) is part of their identity
    encodes: ClassVar[bool] = False
    # The option names it takes; an unknown one is refused here (None: the engine checks its own).
    # A bad option raises fanren.errors.OptionError, which the compiler places in drama.toml.
    options_known: ClassVar[frozenset[str] | None] = None
    # Options that name a file of the drama folder (a ComfyUI workflow): the compiler checks the file
    # exists and hands the engine its absolute path, so the engine reads it wherever it is made.
    file_options: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def variant(cls, family: str) -> type[Engine]:
        """The class that renders `family` under this engine's name: itself, unless one name serves
        several families (comfyui renders images and clips)."""
        return cls

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options: dict[str, Any] = dict(options or {})
        self.loads = 0  # how many times load() ran: tests count it
        if self.options_known is not None:
            for name in sorted(self.options):
                if name not in self.options_known:
                    raise unknown_option(self.name, name, self.options_known)

    def identity(self) -> dict[str, Any]:
        """Everything about the engine that changes output bytes. Goes into every key it renders."""
        identity = {"name": self.name, "version": self.version, "options": self.options}
        if self.encodes:
            identity["encoder"] = encoder_platform()
        return identity

    def resources(self) -> Resources:
        return Resources()

    def load(self) -> None:
        self.loads += 1

    def run(self, request: Request) -> dict[str, Path]:
        raise NotImplementedError

    def unload(self) -> None:
        return None


class VideoEngine(Engine):
    family = "video"
    kinds = frozenset({"clip"})
    encodes = True
    # Whether a shot may bring this engine's clips to the drama's fps by motion-compensated
    # interpolation (the drama's `motion`), or always repeats frames.
    interpolates: ClassVar[bool] = True

    def native_size(self, aspect: str) -> tuple[int, int]:
        """The frame size clips come out at; keyframes are rendered at this size."""
        return episode_size(aspect)

    def native_fps(self, drama_fps: int) -> int:
        return drama_fps


EPISODE_SIZES = {"16:9": (1280, 720), "9:16": (720, 1280), "1:1": (960, 960)}


def episode_size(aspect: str) -> tuple[int, int]:
    return EPISODE_SIZES[aspect]
