"""`flux2`: character sheets and keyframes with FLUX.2 (diffusers), characters kept by multi-reference.

    character  text → image from the description and style prompt; with the character's `reference`
               picture, FLUX.2 redraws it as the character (the picture is FLUX.2's reference).
    keyframe   a shot without characters: text → image, at the video engine's native size.
               a shot with characters (consistency = "reference", the default): the shot's character
               sheets are FLUX.2's reference images, one each, in the order the shot lists them.

FLUX.2 takes several reference images at once: each is encoded by the VAE and its latents join the
transformer's token sequence with their own position ids, so no side-by-side collage is needed (as
FLUX.1 Kontext needs) and each sheet keeps its full width. The prompt names them ("image 1", ...).

Two pipelines, chosen by the model: `Flux2KleinPipeline` for FLUX.2 [klein] (the default, 4B,
distilled to 4 steps, Qwen3-4B text encoder) and `Flux2Pipeline` for FLUX.2 [dev] (32B, Mistral
Small 3.1 text encoder, 50 steps with guidance).

Each reference is read at the keyframe's pixel area (aspect kept, sides multiples of 16): a sheet is
rendered at the episode's size, and reading it larger than the keyframe costs sequence length,
hence time, for detail the keyframe cannot show.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..base import Request
from ..diffusion import (
    COMMON_OPTIONS,
    FLUX2_DEV,
    FLUX2_KLEIN_4B,
    SPEED_OPTIONS,
    ModelRef,
    VramNeed,
    compile_blocks,
    diffusers_module,
    generator,
    step_progress,
)
from .picture import PictureEngine, join_names, open_rgb, shot_characters

if TYPE_CHECKING:
    import torch
    from PIL import Image

CONSISTENCY = ("reference", "none")

# The scene comes first so that a prompt cut at max_sequence_length loses the instruction, not the scene.
KEYFRAME_INSTRUCTION = ("{prompt}\nShow {cast} exactly as in the reference images: the same faces, "
                        "hairstyles and costumes, now in this scene.")
REFERENCE_INSTRUCTION = "{prompt}\nRedraw the person in image 1 as this character, keeping the face."

# The pipelines refuse a reference with a side under 64 pixels, and shrink one over 1 MP themselves.
MIN_REFERENCE_SIDE = 64
MAX_REFERENCE_AREA = 1024 * 1024


@dataclass(frozen=True)
class Flux2Defaults:
    pipeline: str             # the diffusers class
    steps: int
    guidance: float
    max_sequence_length: int


KLEIN = Flux2Defaults("Flux2KleinPipeline", steps=4, guidance=1.0, max_sequence_length=512)  # step-distilled
KLEIN_BASE = Flux2Defaults("Flux2KleinPipeline", steps=50, guidance=4.0, max_sequence_length=512)
DEV = Flux2Defaults("Flux2Pipeline", steps=50, guidance=4.0, max_sequence_length=512)
TINY = Flux2Defaults("Flux2KleinPipeline", steps=2, guidance=1.0, max_sequence_length=128)
KNOWN = {FLUX2_KLEIN_4B: KLEIN, "black-forest-labs/FLUX.2-klein-9B": KLEIN,
         "black-forest-labs/FLUX.2-klein-base-4B": KLEIN_BASE, "black-forest-labs/FLUX.2-klein-base-9B": KLEIN_BASE,
         FLUX2_DEV: DEV}


def defaults_for(ref: ModelRef) -> Flux2Defaults:
    """Which pipeline and defaults a model gets: by name when known, else from its model_index.json."""
    if ref.source == "tiny":
        return TINY
    if ref.target in KNOWN:
        return KNOWN[ref.target]
    folder = ref.local_folder()
    index: dict[str, Any] = {}
    if folder is not None:
        try:
            index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            index = {}
    if index.get("_class_name") == "Flux2Pipeline" or (not index and "klein" not in ref.target.lower()):
        return DEV
    return KLEIN if index.get("is_distilled", True) else KLEIN_BASE


class Flux2Engine(PictureEngine):
    name = "flux2"
    version = "1"
    default_model = FLUX2_KLEIN_4B
    # No `cache` (step caching): klein's four distilled steps leave no step to skip.
    options_known = COMMON_OPTIONS | SPEED_OPTIONS | {"steps", "guidance", "consistency", "compile"}
    attention_dispatcher = True  # Flux2AttnProcessor calls dispatch_attention_fn

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        base = defaults_for(self.model)
        self.pipeline_class = base.pipeline
        self.steps = self._whole("steps", base.steps, low=1, high=200)
        self.guidance = self._number("guidance", base.guidance, low=0, high=30)
        self.max_sequence_length = base.max_sequence_length
        self.consistency = self._choice("consistency", CONSISTENCY, "reference")
        self.compile = self._flag("compile", False)
        self._pipe: Any = None

    def _settings(self) -> dict[str, Any]:
        return {"pipeline": self.pipeline_class, "steps": self.steps, "guidance": self.guidance,
                "max_sequence_length": self.max_sequence_length, "consistency": self.consistency,
                "compile": self.compile}

    def vram_need(self) -> VramNeed:
        if self.model.source == "tiny":
            return VramNeed(full=0.5, model_offload=0.5, group_offload=0.5, sequential_offload=0.5)
        if self.pipeline_class == "Flux2Pipeline":
            # Estimated, not measured: a 32B transformer (64 GB in bf16) and a 24B Mistral (48 GB).
            return VramNeed(full=118.0, model_offload=68.0, group_offload=10.0, sequential_offload=5.0)
        # FLUX.2 [klein] 4B, measured on an H200 (bf16, 720×1280 with two references; performance.md):
        # 14.96 GiB resident (transformer 3.9 B, Qwen3-4B 4.0 B, VAE 0.08 B), 17.07 GiB at the peak.
        # So the full mode fits a 24 GB card; the offload modes are estimates.
        return VramNeed(full=17.1, model_offload=10.5, group_offload=3.0, sequential_offload=2.0)

    # loading ----------------------------------------------------------------

    def _load_pipelines(self, dtype: torch.dtype) -> None:
        pipeline_class = getattr(diffusers_module(), self.pipeline_class)
        self._pipe = self._pipeline(pipeline_class, self.model, dtype, self.revision)
        self._prepare_transformer(self._pipe.transformer)
        if self.compile:
            compile_blocks(self._pipe.transformer)

    def _drop_pipelines(self) -> None:
        self._pipe = None

    # rendering --------------------------------------------------------------

    def _character(self, request: Request, width: int, height: int) -> Image.Image:
        from PIL import Image, ImageOps

        prompt = str(request.params["prompt"])
        reference = request.sources.get("reference")
        if reference is None:
            return self._generate_image(request, prompt, [], width, height)
        photo = open_rgb(reference)
        if self.consistency == "none":  # the user's picture is the sheet, cropped to the size
            return ImageOps.fit(photo, (width, height), Image.Resampling.LANCZOS)
        return self._generate_image(request, REFERENCE_INSTRUCTION.format(prompt=prompt),
                                    [reference_image(photo, width * height)], width, height)

    def _keyframe(self, request: Request, width: int, height: int) -> Image.Image:
        prompt = str(request.params["prompt"])
        cast = shot_characters(request)
        if self.consistency == "none" or not cast:
            return self._generate_image(request, prompt, [], width, height)
        references = [reference_image(open_rgb(sheet), width * height) for _, sheet in cast]
        named = [f"{name} (image {i})" for i, (name, _) in enumerate(cast, start=1)]
        instruction = KEYFRAME_INSTRUCTION.format(cast=join_names(named), prompt=prompt)
        return self._generate_image(request, instruction, references, width, height)

    def _generate_image(self, request: Request, prompt: str, references: list[Image.Image], width: int,
                        height: int) -> Image.Image:
        result = self._generate(
            self._pipe, image=references or None, prompt=prompt, width=width, height=height,
            num_inference_steps=self.steps, guidance_scale=self.guidance,
            max_sequence_length=self.max_sequence_length, generator=generator(int(request.params["seed"])),
            callback_on_step_end=step_progress(request, self.steps))
        image: Image.Image = result.images[0]
        return image


def reference_image(picture: Image.Image, area: int) -> Image.Image:
    """`picture` scaled to about `area` pixels (at most 1 MP), aspect kept, sides multiples of 16 and
    at least 64: the size FLUX.2 then reads it at, unchanged."""
    from PIL import Image

    area = min(area, MAX_REFERENCE_AREA)
    scale = math.sqrt(area / (picture.width * picture.height))
    width = max(MIN_REFERENCE_SIDE, round(picture.width * scale / 16) * 16)
    height = max(MIN_REFERENCE_SIDE, round(picture.height * scale / 16) * 16)
    while width * height > MAX_REFERENCE_AREA:  # rounding up may pass 1 MP; the pipeline would resize
        width, height = (width - 16, height) if width >= height else (width, height - 16)
    if (width, height) == picture.size:
        return picture
    return picture.resize((width, height), Image.Resampling.LANCZOS)

