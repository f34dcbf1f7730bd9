"""`flux`: character sheets and keyframes with FLUX.1 (diffusers), characters kept consistent by Kontext.

    character  text → image with FLUX.1-dev (or schnell) from the description and style prompt;
               with a reference image, FLUX.1 Kontext redraws the reference in the drama's style.
    keyframe   a shot without characters: text → image, at the video engine's native size.
               a shot with characters (consistency = "kontext", the default): FLUX.1 Kontext edits a
               picture of the shot's character sheets, side by side, into the scene, so every
               keyframe shows the same faces and costumes as the sheets.

Why Kontext and not an IP-Adapter: Kontext reads the reference through the transformer's own
attention (the sheet's latents join the sequence), which keeps faces and costumes far more
faithfully than the CLIP-image embedding an IP-Adapter injects, and several characters are simply
several sheets in the one reference picture. It costs about twice a plain step (the sequence is
twice as long); keyframes are small (720×480 for CogVideoX), so that is affordable.

Kontext reads the reference at the keyframe's own size (no resize to its preferred ~1 MP), which
keeps its sequence, and its time, proportional to the keyframe.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..base import Request
from ..diffusion import (
    COMMON_OPTIONS,
    FLUX_DEV,
    FLUX_KONTEXT,
    FLUX_SCHNELL,
    RANDOM_PREFIX,
    SPEED_OPTIONS,
    TINY_PREFIX,
    ModelRef,
    VramNeed,
    compile_blocks,
    diffusers_module,
    enable_step_cache,
    generator,
    load_transformer,
    model_ref,
    step_cache,
    step_progress,
    torch_dtype,
)
from .picture import PictureEngine, join_names, open_rgb, shot_characters

if TYPE_CHECKING:
    import torch
    from PIL import Image

CONSISTENCY = ("kontext", "none")

# Kontext is an editing model: the prompt says what to keep from the reference and what to make.
# The scene comes first so that a prompt cut at max_sequence_length loses the instruction, not the scene.
KEYFRAME_INSTRUCTION = ("{prompt}\nShow {names} exactly as in the reference picture: the same faces, "
                        "hairstyles and costumes, now in this scene.")
REFERENCE_INSTRUCTION = "{prompt}\nRedraw the person in this photo as this character, keeping the face."
SHEET_BACKGROUND = (128, 128, 128)


@dataclass(frozen=True)
class FluxDefaults:
    steps: int
    guidance: float
    max_sequence_length: int


DEV = FluxDefaults(steps=28, guidance=3.5, max_sequence_length=512)
SCHNELL = FluxDefaults(steps=4, guidance=0.0, max_sequence_length=256)  # timestep-distilled: no guidance
KONTEXT = FluxDefaults(steps=28, guidance=2.5, max_sequence_length=512)
TINY = FluxDefaults(steps=2, guidance=3.5, max_sequence_length=128)
KNOWN = {FLUX_DEV: DEV, FLUX_SCHNELL: SCHNELL, FLUX_KONTEXT: KONTEXT}


def defaults_for(ref: ModelRef) -> FluxDefaults:
    if ref.source == "tiny":
        return TINY
    if ref.target in KNOWN:
        return KNOWN[ref.target]
    config = ref.config("transformer") or {}
    return SCHNELL if config.get("guidance_embeds") is False else DEV


def default_kontext_model(ref: ModelRef) -> str:
    """Kontext weights that match the kind of the main model: tiny with tiny, random with random."""
    if ref.source == "tiny":
        return TINY_PREFIX + "flux-kontext"
    if ref.source == "random":
        return RANDOM_PREFIX + FLUX_KONTEXT
    return FLUX_KONTEXT


class FluxEngine(PictureEngine):
    name = "flux"
    version = "1"
    default_model = FLUX_DEV
    options_known = COMMON_OPTIONS | SPEED_OPTIONS | {
        "steps", "guidance", "consistency", "kontext_model", "kontext_revision", "kontext_steps",
        "kontext_guidance", "compile", "cache"}
    attention_dispatcher = True  # FluxAttnProcessor calls dispatch_attention_fn

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        base = defaults_for(self.model)
        self.steps = self._whole("steps", base.steps, low=1, high=200)
        self.guidance = self._number("guidance", base.guidance, low=0, high=30)
        self.max_sequence_length = base.max_sequence_length
        self.consistency = self._choice("consistency", CONSISTENCY, "kontext")
        self.kontext_model = model_ref(self.options.get("kontext_model", default_kontext_model(self.model)),
                                       "kontext_model", engine=self.name)
        self.kontext_revision = self._optional_text("kontext_revision")
        kontext = TINY if self.kontext_model.source == "tiny" else KONTEXT
        self.kontext_steps = self._whole("kontext_steps", kontext.steps, low=1, high=200)
        self.kontext_guidance = self._number("kontext_guidance", kontext.guidance, low=0, high=30)
        self.compile = self._flag("compile", False)
        self.cache = step_cache(self.name, self.options.get("cache"))
        self._text_to_image: Any = None
        self._kontext: Any = None

    def _settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "steps": self.steps, "guidance": self.guidance, "max_sequence_length": self.max_sequence_length,
            "consistency": self.consistency, "compile": self.compile, "cache": self.cache,
        }
        if self.consistency == "kontext":
            settings["kontext"] = {**self.kontext_model.identity(self.kontext_revision),
                                   "steps": self.kontext_steps, "guidance": self.kontext_guidance}
        return settings

    def vram_need(self) -> VramNeed:
        if self.model.source == "tiny":
            return VramNeed(full=0.5, model_offload=0.5, group_offload=0.5, sequential_offload=0.5)
        # Measured on an H100 (bf16, 1024²): FLUX.1-dev with both text encoders peaks at 34 GB.
        # With Kontext both 12B transformers (23.8 GB each) stay resident in the full mode.
        kontext = 23.8 if self.consistency == "kontext" else 0.0
        return VramNeed(full=34.0 + kontext, model_offload=27.0, group_offload=6.0, sequential_offload=3.0)

    # loading ----------------------------------------------------------------

    def _load_pipelines(self, dtype: torch.dtype) -> None:
        from diffusers import FluxPipeline

        self._text_to_image = self._pipeline(FluxPipeline, self.model, dtype, self.revision)
        self._speed_up(self._text_to_image.transformer)

    def _kontext_pipeline(self) -> Any:
        """FLUX.1 Kontext beside FLUX.1-dev: its own transformer, the same text encoders and VAE."""
        if self._kontext is None:
            diffusers = diffusers_module()
            assert self.device is not None
            transformer = load_transformer(
                diffusers.FluxTransformer2DModel, self.kontext_model, torch_dtype(self.dtype),
                engine=self.name, family=self.family, option="kontext_model", revision=self.kontext_revision,
                download=self.download, device=self.device).eval()
            self._speed_up(transformer)
            shared = self._text_to_image.components
            self._kontext = diffusers.FluxKontextPipeline(**{**shared, "transformer": transformer})
            self._kontext.set_progress_bar_config(disable=True)
        return self._kontext

    def _speed_up(self, transformer: Any) -> None:
        self._prepare_transformer(transformer)
        enable_step_cache(transformer, self.cache)
        if self.compile:
            compile_blocks(transformer, fullgraph=self.cache is None)

    def _drop_pipelines(self) -> None:
        self._text_to_image = None
        self._kontext = None

    # rendering --------------------------------------------------------------

    def _character(self, request: Request, width: int, height: int) -> Image.Image:
        from PIL import Image, ImageOps

        prompt = str(request.params["prompt"])
        reference = request.sources.get("reference")
        if reference is None:
            return self._text_to_image_run(request, prompt, width, height)
        # Without Kontext the user's picture is the sheet, cropped to the size.
        photo = ImageOps.fit(open_rgb(reference), (width, height), Image.Resampling.LANCZOS)
        if self.consistency == "none":
            return photo
        return self._kontext_run(request, REFERENCE_INSTRUCTION.format(prompt=prompt), photo, width, height)

    def _keyframe(self, request: Request, width: int, height: int) -> Image.Image:
        prompt = str(request.params["prompt"])
        cast = shot_characters(request)
        if self.consistency == "none" or not cast:
            return self._text_to_image_run(request, prompt, width, height)
        names, sheets = [name for name, _ in cast], [open_rgb(sheet) for _, sheet in cast]
        instruction = KEYFRAME_INSTRUCTION.format(names=join_names(names), prompt=prompt)
        return self._kontext_run(request, instruction, side_by_side(sheets, (width, height)), width, height)

    def _text_to_image_run(self, request: Request, prompt: str, width: int, height: int) -> Image.Image:
        result = self._generate(
            self._text_to_image, prompt=prompt, width=width, height=height,
            num_inference_steps=self.steps, guidance_scale=self.guidance,
            max_sequence_length=self.max_sequence_length, generator=generator(int(request.params["seed"])),
            callback_on_step_end=step_progress(request, self.steps))
        image: Image.Image = result.images[0]
        return image

    def _kontext_run(self, request: Request, prompt: str, reference: Image.Image, width: int,
                     height: int) -> Image.Image:
        pipeline = self._kontext_pipeline()
        # diffusers' Kontext pipeline opens no cache context around its transformer calls (FluxPipeline
        # does): step caching needs one.
        context = pipeline.transformer.cache_context("cond") if self.cache else nullcontext()
        with context:
            # max_area = the keyframe's own area, or Kontext rescales the output towards 1 MP.
            result = self._generate(
                pipeline, image=reference, prompt=prompt, width=width, height=height,
                max_area=width * height, _auto_resize=False,
                num_inference_steps=self.kontext_steps, guidance_scale=self.kontext_guidance,
                max_sequence_length=self.max_sequence_length,
                generator=generator(int(request.params["seed"])),
                callback_on_step_end=step_progress(request, self.kontext_steps))
        image: Image.Image = result.images[0]
        return image


def side_by_side(sheets: list[Image.Image], size: tuple[int, int]) -> Image.Image:
    """The shot's character sheets in one reference picture of `size`: one column each, in order."""
    from PIL import Image, ImageOps

    width, height = size
    canvas = Image.new("RGB", size, SHEET_BACKGROUND)
    for i, sheet in enumerate(sheets):
        left, right = width * i // len(sheets), width * (i + 1) // len(sheets)
        fitted = ImageOps.contain(sheet, (right - left, height), Image.Resampling.LANCZOS)
        canvas.paste(fitted, (left + (right - left - fitted.width) // 2, (height - fitted.height) // 2))
    return canvas
