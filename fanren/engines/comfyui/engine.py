"""`comfyui`: render keyframes or clips with a ComfyUI workflow on a ComfyUI server.

Profile: image = { engine = "comfyui", url = "http://127.0.0.1:8188", workflow = "workflows/keyframe.json",
                   inputs = { prompt = "6.inputs.text", seed = "3.inputs.seed" }, output = "9" }
         video = { engine = "comfyui", workflow = "workflows/clip.json", frames = 49, fps = 16 }
See docs/comfyui.md. The workflow (API format) is read when the profile is resolved; its canonical
JSON's digest, the input places, the output node and the options that change pictures are the
engine's identity. The URL and the timeout are not: where the server runs changes no bytes.

What fanren guarantees: a key names one workflow with one set of inputs, and the bytes first
rendered for it are the bytes every later build uses. What it cannot: that the server renders the
same bytes again (GPU kernels, model files swapped under the same name, custom nodes updated).
`label` lets a profile fold such a change into the keys; `fanren build --check` shows a server
that does not repeat itself.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import xxhash

from ...errors import EngineError, OptionError
from ...http import mask, request_secrets
from ...media import run_ffmpeg
from ..base import Engine, Request, VideoEngine, episode_size
from ..diffusion.outputs import BITEXACT, X264
from ..voice.http import check_url
from .client import ComfyUIClient, ComfyUIFailure
from .workflow import IMAGE_INPUTS, VIDEO_INPUTS, Workflow, load_workflow

log = logging.getLogger("fanren.comfyui")

DEFAULT_URL = "http://127.0.0.1:8188"
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp"})
VIDEO_SUFFIXES = frozenset({".mp4", ".webm", ".mov", ".mkv", ".m4v"})
ANIMATED_SUFFIXES = frozenset({".gif", ".webp", ".png"})  # Pillow reads their frames (ffmpeg 5 cannot: webp)
OUTPUT_KEYS = ("images", "gifs", "videos", "video")  # where output nodes list their files


@dataclass(frozen=True)
class Rendered:
    """What a finished prompt left: the output node's entry of the history, and the client to fetch its files."""

    output: Mapping[str, Any]
    client: ComfyUIClient


def workflow_digest(nodes: Mapping[str, Any]) -> str:
    """The workflow's canonical JSON hashed: reformatting the file changes no key, any edit does."""
    canonical = json.dumps(nodes, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return xxhash.xxh3_128_hexdigest(canonical.encode("utf-8"))


class _ComfyUI(Engine):
    """What the image and the video engine share: the options, the workflow, the server."""

    name = "comfyui"
    version = "1"
    # The workflow option is a file of the drama folder: resolve_engines hands it over as an absolute path.
    file_options: ClassVar[frozenset[str]] = frozenset({"workflow"})
    COMMON: ClassVar[frozenset[str]] = frozenset({"url", "workflow", "inputs", "output", "timeout", "label"})
    input_names: ClassVar[frozenset[str]]
    default_timeout: ClassVar[float]

    @classmethod
    def variant(cls, family: str) -> type[Engine]:
        return ComfyUIVideoEngine if family == "video" else ComfyUIImageEngine

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self.url = check_url(self.options.get("url", DEFAULT_URL), "url", self.name)
        path = self.options.get("workflow")
        if not isinstance(path, str) or not path:
            raise OptionError(self.name, "workflow", "the path of a workflow file in ComfyUI's API format, "
                              "relative to the drama folder", repr(path))
        self.workflow_path = Path(path)
        self.workflow: Workflow = load_workflow(self.workflow_path, self.options.get("inputs"),
                                                self.options.get("output"), self.input_names)
        timeout = self.options.get("timeout", self.default_timeout)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise OptionError(self.name, "timeout", "seconds a prompt may take, more than 0", repr(timeout))
        self.timeout = float(timeout)
        label = self.options.get("label", "")
        if not isinstance(label, str):
            raise OptionError(self.name, "label", "a text naming the server's models and nodes", repr(label))
        self.label = label
        self.digest = workflow_digest(self.workflow.nodes)

    def identity(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "workflow": self.digest,
            "inputs": {name: [str(t) for t in targets] for name, targets in sorted(self.workflow.targets.items())},
            "output": self.workflow.output,
        }
        if self.label:
            options["label"] = self.label
        return {**super().identity(), "options": {**options, **self.picture_options()}}

    def picture_options(self) -> dict[str, Any]:
        return {}

    # ── one node ─────────────────────────────────────────────────────────────

    def render(self, request: Request, values: dict[str, Any], image: Path | None) -> Rendered:
        """Fill the workflow, run it on the server and return the output node's entry of the history."""
        client = ComfyUIClient(self.url, self.timeout)
        try:
            if "image" in self.workflow.targets:
                if image is None:
                    raise ComfyUIFailure(f"the workflow takes an image ({self._places('image')}) but "
                                         f"{request.node_id} has none to give it")
                # Named by content: the same picture is one file on the server however often it is sent.
                name = xxhash.xxh3_128_hexdigest(image.read_bytes()) + (image.suffix.lower() or ".png")
                values["image"] = client.upload_image(image, name)
            workflow = self.workflow.filled({k: v for k, v in values.items() if k in self.workflow.targets})
            request.progress(0.0, f"queued on {self.url}")
            entry = client.run(workflow, request.progress, log.info)
            outputs = entry.get("outputs") or {}
            if not outputs:
                raise ComfyUIFailure("the prompt finished with no outputs at all (was every output node cached "
                                     "with nothing saved, or did the server drop them?)")
            output = outputs.get(self.workflow.output)
            if not output:
                gave = ", ".join(self.workflow.describe(n) if n in self.workflow.nodes else f"node {n}"
                                 for n in sorted(outputs))
                raise ComfyUIFailure(f"the output {self.workflow.describe(self.workflow.output)} gave no files "
                                     f"(outputs came from {gave}; the profile's output option names the node "
                                     f"whose files are the result)")
            return Rendered(output, client)
        except ComfyUIFailure as failure:
            raise self.failure(failure) from None

    def failure(self, error: Exception) -> EngineError:
        message = f"ComfyUI at {self.url} with workflow {self.workflow_path}: {error}"
        if "connection refused" in str(error):
            message += "; start ComfyUI (python main.py --listen 127.0.0.1 --port 8188) or set url in the profile"
        return EngineError(mask(message, request_secrets(self.url, {})))

    def _places(self, name: str) -> str:
        return ", ".join(str(t) for t in self.workflow.targets[name])

    def files(self, output: Mapping[str, Any]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for key in OUTPUT_KEYS:
            entries = output.get(key)
            if isinstance(entries, list):
                found += [e for e in entries if isinstance(e, dict) and isinstance(e.get("filename"), str)]
        return found

    def describe_files(self, files: list[dict[str, Any]]) -> str:
        names = ", ".join(str(f["filename"]) for f in files[:5])
        return f"{len(files)} file{'s' if len(files) != 1 else ''} ({names}{', ...' if len(files) > 5 else ''})"


class ComfyUIImageEngine(_ComfyUI):
    family = "image"
    kinds = frozenset({"character", "keyframe"})
    options_known = _ComfyUI.COMMON
    input_names = IMAGE_INPUTS
    default_timeout = 600.0

    def run(self, request: Request) -> dict[str, Path]:
        from PIL import Image

        params = request.params
        width, height = (int(v) for v in params["size"])
        values = {"prompt": params["prompt"], "seed": int(params["seed"]), "width": width, "height": height}
        rendered = self.render(request, values, self._image_input(request))
        files = self.files(rendered.output)
        pictures = [f for f in files if Path(f["filename"]).suffix.lower() in IMAGE_SUFFIXES]
        if not pictures or _animated(rendered.output):
            raise self.failure(ComfyUIFailure(
                f"the output {self.workflow.describe(self.workflow.output)} gave "
                f"{self.describe_files(files) if files else 'no image files'}; a {request.kind} needs an image "
                f"(a PNG, JPEG or WebP from SaveImage)"))
        raw = request.out_dir / f"server{Path(pictures[0]['filename']).suffix.lower()}"
        try:
            raw.write_bytes(rendered.client.view(pictures[0]))
        except ComfyUIFailure as failure:
            raise self.failure(failure) from None
        out = request.out_dir / "image.png"
        try:
            with Image.open(raw) as picture:
                image = picture.convert("RGB")
        except OSError as exc:
            raise self.failure(ComfyUIFailure(f"{pictures[0]['filename']} is not an image Pillow reads ({exc})")) from None
        if image.size != (width, height):
            # The workflow may ignore the asked size (no width/height input): the node's contract is its size.
            log.info("%s: resizing %s×%s to %s×%s", request.node_id, *image.size, width, height)
            image = image.resize((width, height), Image.Resampling.LANCZOS)
        image.save(out, format="PNG")  # no metadata: ComfyUI's copy carries the workflow as PNG text
        raw.unlink()
        request.progress(1.0, "done")
        return {"image.png": out}

    def _image_input(self, request: Request) -> Path | None:
        """The picture an image workflow starts from: the first character's portrait (keyframe), the
        user's reference (character)."""
        if request.kind == "keyframe":
            for _, outputs in request.inputs_of_kind("character"):
                if "image.png" in outputs:
                    return Path(outputs["image.png"])
            return None
        reference = request.params.get("reference")
        return Path(request.sources[reference]) if reference and reference in request.sources else None


class ComfyUIVideoEngine(_ComfyUI, VideoEngine):
    family = "video"
    kinds = frozenset({"clip"})
    options_known = _ComfyUI.COMMON | {"frames", "fps", "size"}
    input_names = VIDEO_INPUTS
    default_timeout = 3600.0

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        frames = self.options.get("frames", 49)
        if isinstance(frames, bool) or not isinstance(frames, int) or not 1 <= frames <= 10000:
            raise OptionError(self.name, "frames", "the number of frames the workflow renders (1 to 10000)",
                              repr(frames))
        self.frames = frames
        fps = self.options.get("fps")
        if fps is not None and (isinstance(fps, bool) or not isinstance(fps, int) or not 1 <= fps <= 120):
            raise OptionError(self.name, "fps", "the frame rate the workflow renders at, 1 to 120", repr(fps))
        self.fps: int | None = fps
        size = self.options.get("size")
        if size is not None and not (isinstance(size, list) and len(size) == 2 and all(
                isinstance(v, int) and not isinstance(v, bool) and 16 <= v <= 8192 and v % 2 == 0 for v in size)):
            raise OptionError(self.name, "size", "[width, height] in even pixels from 16 to 8192", repr(size))
        self.size: tuple[int, int] | None = (size[0], size[1]) if size else None

    def native_size(self, aspect: str) -> tuple[int, int]:
        return self.size or episode_size(aspect)

    def native_fps(self, drama_fps: int) -> int:
        return self.fps or drama_fps

    def picture_options(self) -> dict[str, Any]:
        return {"frames": self.frames, **({"fps": self.fps} if self.fps else {}),
                **({"size": list(self.size)} if self.size else {})}

    def run(self, request: Request) -> dict[str, Path]:
        params = request.params
        width, height = (int(v) for v in params["size"])
        fps = int(params["fps"])
        keyframes = request.inputs_of_kind("keyframe")
        keyframe = Path(keyframes[0][1]["image.png"]) if keyframes else None
        values = {"prompt": params["prompt"], "seed": int(params["seed"]), "width": width, "height": height,
                  "frames": self.frames, "fps": fps}
        rendered = self.render(request, values, keyframe)
        files = self.files(rendered.output)
        animated = _animated(rendered.output)
        # A GIF is always an animation (VHS_VideoCombine's image/gif); a WebP or PNG is one when the
        # node says so (SaveAnimatedWEBP, SaveAnimatedPNG), else a frame of a sequence.
        videos = [f for f in files if (suffix := Path(f["filename"]).suffix.lower()) in VIDEO_SUFFIXES
                  or suffix == ".gif" or (animated and suffix in ANIMATED_SUFFIXES)]
        stills = [f for f in files if Path(f["filename"]).suffix.lower() in IMAGE_SUFFIXES] if not videos else []
        if not videos and len(stills) < 2:
            raise self.failure(ComfyUIFailure(
                f"the output {self.workflow.describe(self.workflow.output)} gave "
                f"{self.describe_files(files) if files else 'no files'}; a clip needs a video (SaveVideo, "
                f"VHS_VideoCombine) or a sequence of at least 2 frames (SaveImage)"))
        client = rendered.client
        frames_dir = request.out_dir / "frames"
        frames_dir.mkdir()
        try:
            if videos:
                source = request.out_dir / f"server{Path(videos[0]['filename']).suffix.lower()}"
                source.write_bytes(client.view(videos[0]))
                if source.suffix in ANIMATED_SUFFIXES:
                    _split_frames(source, frames_dir)
                    source.unlink()
                    source = frames_dir / "%06d.png"
            else:
                for n, still in enumerate(stills):
                    (frames_dir / f"{n:06d}.png").write_bytes(client.view(still))
                    request.progress(0.9 + 0.1 * n / len(stills), f"frame {n + 1}/{len(stills)}")
                source = frames_dir / "%06d.png"
        except ComfyUIFailure as failure:
            raise self.failure(failure) from None
        clip = request.out_dir / "clip.mp4"
        # Every frame the server made, played at the clip's fps, at the clip's size: a video's own
        # timestamps are dropped (setpts) so frames are never duplicated or skipped.
        image_input = ["-framerate", str(fps)] if source.parent == frames_dir else []
        run_ffmpeg([*image_input, "-i", str(source), "-an",
                    "-vf", f"setpts=N/({fps}*TB),scale={width}:{height}:flags=lanczos,format=yuv420p",
                    "-r", str(fps), *X264, *BITEXACT, "-movflags", "+faststart", str(clip)],
                   f"encoding the frames ComfyUI made for {request.node_id}")
        if source.parent != frames_dir:
            source.unlink()
        for frame in frames_dir.iterdir():
            frame.unlink()
        frames_dir.rmdir()
        request.progress(1.0, "done")
        return {"clip.mp4": clip}


def _animated(output: Mapping[str, Any]) -> bool:
    """Whether a saving node says its files are animations (ComfyUI writes "animated": [true])."""
    return output.get("animated") in ([True], True)


def _split_frames(animation: Path, folder: Path) -> None:
    """An animated WebP, GIF or APNG as numbered PNGs."""
    from PIL import Image, ImageSequence

    try:
        with Image.open(animation) as image:
            for n, frame in enumerate(ImageSequence.Iterator(image)):
                frame.convert("RGB").save(folder / f"{n:06d}.png")
    except OSError as exc:
        raise ComfyUIFailure(f"{animation.name} is not an animation Pillow reads ({exc})") from None
