"""`ltx2`: a clip from the keyframe with LTX-2 image-to-video (diffusers' LTX2ImageToVideoPipeline).

    Lightricks/LTX-2    121 frames at 24 fps, 1280×704 (704×1280 for 9:16, 960×960 for 1:1)

LTX-2 is an audio-video model: one 19B transformer denoises the video and a soundtrack together,
and the pipeline decodes both. fanren speaks its lines with its own voice engine, so the engine
keeps the frames and drops the audio; the clip it writes has no audio stream. (The audio tokens
cost about a tenth of a step; they cannot be switched off without changing the video.)

Its VAE compresses 32× in space and 8× in time after the first frame: sizes are multiples of 32
and a clip has 8k+1 frames, other counts are refused with exit 2 before anything loads.

Two schedules:

    distilled = false   the pipeline's own: 30 steps with classifier-free guidance 3.0,
                        spatio-temporal guidance 1.0 and modality guidance 3.0 (up to four
                        transformer passes a step)
    distilled = true    the 8-step schedule of the distilled checkpoint, no guidance: one pass a
                        step. Use it with distilled weights (a `model` folder holding them).

LTX-2 was trained on keyframes that went through H.264 at CRF 33; the engine re-compresses the
keyframe the same way with ffmpeg (`keyframe_crf`, 0 to skip) instead of the pipeline's PyAV path,
so the bytes are x264's with a fixed thread count.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import OptionError
from ...media import run_ffmpeg
from ..base import Request
from ..diffusion import (
    COMMON_OPTIONS,
    LTX2,
    SPEED_OPTIONS,
    TINY_LTX2_FRAMES,
    TINY_VIDEO_SIZES,
    VramNeed,
    check_size,
    compile_blocks,
    generator,
    keyframe_image,
    step_progress,
)
from ..diffusion.video import TINY_VRAM, ImageToVideoEngine, VideoModel, aspect_size, frame_count

if TYPE_CHECKING:
    import torch
    from PIL import Image

# diffusers.pipelines.ltx2.utils.DISTILLED_SIGMA_VALUES, written here so identity() imports nothing.
DISTILLED_SIGMAS = (1.0, 0.99375, 0.9875, 0.98125, 0.975, 0.909375, 0.725, 0.421875)
# The keyframe compression LTX-2 (through 2.3) was trained with (diffusers' DEFAULT_IMAGE_CRF).
KEYFRAME_CRF = 33


# Measured on an H200 (bf16, 704×1280, 121 frames, distilled): 75.6 GB peak in the full mode. The
# offload modes are estimates (not measured): the 19B transformer alone is 38 GB in bf16, so only
# group and sequential offloading fit a 24 GB card.
FULL = VideoModel("LTX-2", {"16:9": (1280, 704), "9:16": (704, 1280), "1:1": (960, 960)}, frames=121, fps=24,
                 vram=VramNeed(full=76.0, model_offload=48.0, group_offload=16.0, sequential_offload=10.0))
TINY = VideoModel("tiny LTX-2", dict(TINY_VIDEO_SIZES), frames=TINY_LTX2_FRAMES, fps=24, vram=TINY_VRAM)
MAX_FRAMES = 481  # 20 s at 24 fps


class LTX2Engine(ImageToVideoEngine):
    name = "ltx2"
    version = "1"
    default_model = LTX2
    options_known = COMMON_OPTIONS | SPEED_OPTIONS | {"steps", "guidance", "distilled", "frames", "fps",
                                                      "keyframe_crf", "compile"}
    # LTX2AudioVideoAttnProcessor goes through diffusers' dispatch_attention_fn.
    attention_dispatcher = True

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.spec = TINY if self.model.source == "tiny" else FULL
        self.distilled = self._flag("distilled", False)
        if self.distilled and ("steps" in self.options or "guidance" in self.options):
            given = "steps" if "steps" in self.options else "guidance"
            raise OptionError(self.name, given, f"no {given} with distilled = true (the distilled schedule "
                              f"is {len(DISTILLED_SIGMAS)} steps without guidance)", repr(self.options[given]))
        tiny_steps = 2 if self.model.source == "tiny" else 30
        self.steps = len(DISTILLED_SIGMAS) if self.distilled else self._whole("steps", tiny_steps, low=1, high=500)
        self.guidance = 1.0 if self.distilled else self._number("guidance", 3.0, low=0, high=30)
        self.frames = frame_count(self.name, self.options, self.spec.label, default=self.spec.frames, step=8,
                                  top=MAX_FRAMES)
        self.fps = self._whole("fps", self.spec.fps, low=1, high=120)
        self.keyframe_crf = self._whole("keyframe_crf", KEYFRAME_CRF, low=0, high=51)
        self.compile = self._flag("compile", False)
        self._image_to_video: Any = None

    def _guidance(self) -> dict[str, Any]:
        """The pipeline's guidance arguments; each scale above its neutral value costs a transformer pass."""
        if self.distilled:
            return {"sigmas": list(DISTILLED_SIGMAS), "guidance_scale": 1.0, "audio_guidance_scale": 1.0,
                    "stg_scale": 0.0, "audio_stg_scale": 0.0, "modality_scale": 1.0, "audio_modality_scale": 1.0}
        return {"guidance_scale": self.guidance, "stg_scale": 1.0, "modality_scale": 3.0, "guidance_rescale": 0.7}

    def _settings(self) -> dict[str, Any]:
        return {"steps": self.steps, "guidance": self.guidance, "distilled": self.distilled,
                "frames": self.frames, "fps": self.fps, "keyframe_crf": self.keyframe_crf, "audio": "dropped",
                "compile": self.compile}

    def native_size(self, aspect: str) -> tuple[int, int]:
        return aspect_size(self.name, self.spec.sizes, aspect, repr(self.model.value))

    # loading ----------------------------------------------------------------

    def _load_pipelines(self, dtype: torch.dtype) -> None:
        from diffusers import LTX2ImageToVideoPipeline

        pipeline = self._pipeline(LTX2ImageToVideoPipeline, self.model, dtype, self.revision)
        self._prepare_transformer(pipeline.transformer)
        if self.compile:
            compile_blocks(pipeline.transformer, ("transformer_blocks",), fullgraph=True)
        self._image_to_video = pipeline

    # rendering --------------------------------------------------------------

    def _render(self, request: Request) -> dict[str, Path]:
        width, height = check_size(self.name, request.params["size"], 32)
        keyframe = compressed(keyframe_image(request, (width, height)), self.keyframe_crf, request.out_dir)
        self.load()
        result = self._generate(
            self._image_to_video, image=keyframe, prompt=str(request.params["prompt"]), width=width,
            height=height, num_frames=self.frames, frame_rate=float(self.fps), num_inference_steps=self.steps,
            image_crf=0, generator=generator(int(request.params["seed"])), output_type="np",
            callback_on_step_end=step_progress(request, self.steps), **self._guidance())
        return self._clip(request, result.frames[0], (width, height))


def compressed(keyframe: Image.Image, crf: int, work_dir: Path) -> Image.Image:
    """The keyframe after one H.264 frame at `crf` (what LTX-2 saw in training); itself when crf is 0."""
    from PIL import Image

    if crf == 0:
        return keyframe
    source, video, back = (work_dir / name for name in ("keyframe.png", "keyframe.mp4", "keyframe-h264.png"))
    keyframe.save(source)
    try:
        run_ffmpeg(["-i", str(source), "-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf),
                    "-pix_fmt", "yuv420p", "-threads", "1", "-frames:v", "1", str(video)], "compressing the keyframe")
        run_ffmpeg(["-i", str(video), "-frames:v", "1", "-pix_fmt", "rgb24", str(back)], "decoding the keyframe")
        with Image.open(back) as image:
            return image.convert("RGB")
    finally:
        for file in (source, video, back):
            file.unlink(missing_ok=True)
