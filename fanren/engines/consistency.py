"""`consistency`: how alike a character looks in every keyframe that shows it, measured by an image
embedding model (DINOv2 or CLIP's vision tower, as transformers ships them).

One `consistency:<character>` node per character that appears in a shot. It embeds the character's
sheet (the `character:<id>` output) and, for every shot showing the character, the part of the
keyframe that shows it, and writes `consistency.json`: the cosine similarity of each shot to the
sheet, each shot's similarity to the centroid of the character's shots, the mean pairwise
similarity across shots, and the z-scores of both similarities among the character's shots. Thresholds are not applied here (fanren/consistency.py does, at report time): changing a
threshold re-embeds nothing.

Two or more characters in one keyframe: the keyframe is cut into as many equal columns as the shot
has characters (characters standing side by side, the way a two-shot is framed), every column is
embedded, and columns are assigned to characters by the Hungarian method
(scipy.optimize.linear_sum_assignment) on their similarity to each character's sheet. The
character is scored on the column it was assigned. One character: the best of three squares
across the frame (start, middle, end), so one at the edge of a 16:9 frame is not cropped away. This is no detector: characters that overlap,
stand one behind the other or fill unequal shares of the frame are not separated (docs/consistency.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import EngineError, OptionError
from .base import Engine, Request, Resources

if TYPE_CHECKING:
    import numpy
    from PIL import Image

DINOV2_SMALL = "facebook/dinov2-small"
DINOV2_BASE = "facebook/dinov2-base"
CLIP_VIT_L14 = "openai/clip-vit-large-patch14"
DEFAULT_MODEL = DINOV2_SMALL
DEVICES = ("auto", "cpu", "cuda")
DECIMALS = 4   # scores are rounded: the JSON is the node's bytes, and float noise below this is not news
BATCH = 16     # crops embedded at once


class ConsistencyEngine(Engine):
    family = "check"
    name = "consistency"
    version = "1"
    kinds = frozenset({"consistency"})
    options_known = frozenset({"model", "revision", "device"})

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        from .diffusion.weights import model_ref

        super().__init__(options)
        self.model_ref = model_ref(self.options.get("model", DEFAULT_MODEL), "model", self.name, encoder=True)
        revision = self.options.get("revision")
        if revision is not None and not isinstance(revision, str):
            raise OptionError(self.name, "revision", "a git revision (a branch, tag or commit)", repr(revision))
        self.revision: str | None = revision
        self.device_option = self.options.get("device", "auto")
        if self.device_option not in DEVICES:
            raise OptionError(self.name, "device", f"one of {', '.join(DEVICES)}", repr(self.device_option))
        self.model: Any = None
        self.processor: Any = None
        self.device = "cpu"

    def identity(self) -> dict[str, Any]:
        ref = self.model_ref
        if ref.source == "folder":  # never a local path in a key: keys must travel
            weights: dict[str, Any] = {"model": Path(ref.target).name, "config": _config_digest(Path(ref.target))}
        elif ref.source == "hub":
            weights = ref.identity(self.revision)
        else:
            weights = ref.identity()
        return {"name": self.name, "version": self.version, **weights}

    def resources(self) -> Resources:
        from .diffusion.placement import nvidia_driver_present  # no torch: asked for while planning

        gpu = self.device_option == "cuda" or (self.device_option == "auto" and nvidia_driver_present())
        return Resources(gpu=gpu, vram_gb=2.0 if gpu else 0.0)

    # loading ----------------------------------------------------------------

    def load(self) -> None:
        try:
            import scipy.optimize  # noqa: F401 -- used by assign(); missing is better said now than mid-build
            from transformers import AutoConfig, CLIPVisionModelWithProjection, Dinov2Model
        except ImportError as exc:
            raise EngineError(f"consistency: the check needs torch, transformers and scipy ({exc}); "
                              "install them with: pip install 'fanren[check]'") from None

        from .diffusion.placement import pick_device

        super().load()
        self.device = pick_device(self.device_option)
        classes = {"dinov2": Dinov2Model, "clip": CLIPVisionModelWithProjection,
                   "clip_vision_model": CLIPVisionModelWithProjection}
        ref = self.model_ref
        with quiet():
            if ref.source in ("tiny", "random"):
                kind = "clip" if "clip" in ref.target else "dinov2"
                model = ref.synthetic.image_encoder(classes[kind], ref.target, self.device)
            else:
                # never a download behind the user's back (as the diffusion engines): HF_HUB_OFFLINE or not
                location = ref.target
                local_only = True
                try:
                    config = AutoConfig.from_pretrained(location, revision=self.revision,
                                                        local_files_only=local_only)
                    model_class = classes.get(config.model_type)
                    if model_class is None:
                        raise EngineError(f"consistency: {ref.value} is a {config.model_type!r} model; "
                                          f"the check embeds with DINOv2 or CLIP ({DINOV2_SMALL}, "
                                          f"{DINOV2_BASE}, {CLIP_VIT_L14})")
                    model = model_class.from_pretrained(location, revision=self.revision,
                                                        local_files_only=local_only)
                except OSError as exc:
                    raise _missing_weights(ref.value, ref.source, exc) from None
                model = model.eval().to(self.device)
        self.model = model
        self.processor = image_processor(model.config.model_type)

    def unload(self) -> None:
        self.model = None
        self.processor = None
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    # running ----------------------------------------------------------------

    def run(self, request: Request) -> dict[str, Path]:
        if request.kind != "consistency":
            raise EngineError(f"the consistency engine cannot render a {request.kind!r} node")
        if self.model is None:
            self.load()
        params = request.params
        ours = str(params["character_id"])
        cast = sorted({str(c) for shot in params["shots"] for c in shot["characters"]})
        sheets = self.embed([_open(request.input_file(f"character:{cid}", "image.png")) for cid in cast])
        sheet_of = dict(zip(cast, sheets, strict=True))

        scored: list[dict[str, Any]] = []
        vectors = []
        for number, shot in enumerate(params["shots"]):
            request.progress(number / len(params["shots"]), f"shot {shot['shot']}")
            keyframe = _open(request.input_file(f"keyframe:{shot['shot']}", "image.png"))
            characters = [str(c) for c in shot["characters"]]
            candidates = regions(keyframe, len(characters))
            embedded = self.embed(candidates)
            region = assign(embedded, [sheet_of[c] for c in characters])[characters.index(ours)]
            vectors.append(embedded[region])
            scored.append({"shot": str(shot["shot"]), "similarity": float(embedded[region] @ sheet_of[ours]),
                           "region": [region, len(candidates)]})
        out = request.out_dir / "consistency.json"
        out.write_text(json.dumps(summary(ours, str(params["name"]), scored, vectors), ensure_ascii=False,
                                  indent=1, sort_keys=True) + "\n", encoding="utf-8")
        return {"consistency.json": out}

    def embed(self, images: Sequence[Image.Image]) -> numpy.ndarray:
        """Unit-length embeddings of `images`, one row each (DINOv2: the CLS token after the last
        layer norm; CLIP: the projected image embedding, the one CLIP compares with text)."""
        import numpy
        import torch

        from .diffusion.runtime import cpu_thread_count, torch_threads

        rows = []
        threads = cpu_thread_count(self.model_ref.source == "tiny") if self.device == "cpu" else None
        with torch_threads(threads), torch.inference_mode():
            for start in range(0, len(images), BATCH):
                batch = self.processor(images=list(images[start:start + BATCH]), return_tensors="pt")
                output = self.model(pixel_values=batch["pixel_values"].to(self.device))
                vectors = output.image_embeds if hasattr(output, "image_embeds") else output.pooler_output
                vectors = torch.nn.functional.normalize(vectors.float(), dim=-1)
                rows.append(vectors.cpu().numpy().astype(numpy.float64))
        return numpy.concatenate(rows)


@contextmanager
def quiet() -> Iterator[None]:
    """No chatter from transformers while loading (fanren shows its own progress); errors still
    come through as exceptions. Not diffusion.runtime.quiet: that one needs diffusers."""
    from transformers.utils import logging

    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()  # "Loading weights: 100%" of transformers 5
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def image_processor(model_type: str) -> Any:
    """The preprocessing each model was trained with (their published preprocessor_config.json),
    built here rather than read from the hub: the same pixels for real, tiny and random weights."""
    import transformers
    from PIL.Image import Resampling

    # transformers 5 names the Pillow processors apart (the plain names want torchvision); 4 does not
    bit = getattr(transformers, "BitImageProcessorPil", None) or transformers.BitImageProcessor
    clip = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    if model_type == "dinov2":
        return bit(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224},
                   resample=Resampling.BICUBIC, image_mean=[0.485, 0.456, 0.406],
                   image_std=[0.229, 0.224, 0.225], do_convert_rgb=True)
    return clip()  # its defaults are openai/clip-vit-large-patch14's


def regions(image: Image.Image, count: int) -> list[Image.Image]:
    """Where `count` characters may stand in `image`: `count` equal columns, left to right; for one
    character, three squares as tall (or wide) as the frame at its start, middle and end — the
    models see a centre square, and the middle one alone would miss a character at the edge of a
    16:9 frame (a square frame is one region)."""
    width, height = image.size
    if count > 1:
        edges = [round(width * i / count) for i in range(count + 1)]
        return [image.crop((edges[i], 0, edges[i + 1], height)) for i in range(count)]
    side = min(width, height)
    if width == height:
        return [image]
    if width > height:
        return [image.crop((x, 0, x + side, height)) for x in (0, (width - side) // 2, width - side)]
    return [image.crop((0, y, width, y + side)) for y in (0, (height - side) // 2, height - side)]


def assign(regions: numpy.ndarray, sheets: Sequence[numpy.ndarray]) -> list[int]:
    """For each sheet (in order), the region it is matched to: the assignment of regions to sheets
    with the largest total similarity (the Hungarian method; with more regions than sheets, some
    regions stay unmatched)."""
    import numpy
    from scipy.optimize import linear_sum_assignment

    if len(sheets) == 1 and len(regions) == 1:
        return [0]
    similarity = regions @ numpy.stack(sheets).T           # regions × sheets
    rows, cols = linear_sum_assignment(similarity, maximize=True)
    region_of = {int(c): int(r) for r, c in zip(rows, cols, strict=True)}
    return [region_of[i] for i in range(len(sheets))]


def summary(character: str, name: str, scored: list[dict[str, Any]],
            vectors: Sequence[numpy.ndarray]) -> dict[str, Any]:
    """consistency.json: each shot's similarity to the sheet (`z`: its z-score among the character's
    shots) and to the centroid of the character's shots (`z_centroid`); the mean pairwise
    similarity across shots."""
    import numpy

    similarity = numpy.array([s["similarity"] for s in scored])
    stack = numpy.stack(vectors)
    centroid = stack.mean(axis=0)
    centroid /= max(float(numpy.linalg.norm(centroid)), 1e-12)
    to_centroid = stack @ centroid
    pairwise = stack @ stack.T
    count = len(scored)
    mean_pairwise = float((pairwise.sum() - numpy.trace(pairwise)) / (count * (count - 1))) if count > 1 else None
    shots = []
    for entry, z, z_centroid, near in zip(scored, z_scores(similarity), z_scores(to_centroid), to_centroid,
                                          strict=True):
        shots.append({"shot": entry["shot"], "similarity": _round(entry["similarity"]),
                      "to_centroid": _round(float(near)), "z": _round(z), "z_centroid": _round(z_centroid),
                      "region": entry["region"]})
    return {"character": character, "name": name, "shots": shots,
            "mean_similarity": _round(float(similarity.mean())),
            "mean_pairwise": None if mean_pairwise is None else _round(mean_pairwise)}


def z_scores(values: numpy.ndarray) -> list[float]:
    """How many standard deviations each value lies from their mean (all 0 when they are equal)."""
    spread = float(values.std())
    return [float((v - values.mean()) / spread) if spread > 1e-9 else 0.0 for v in values]


def _round(value: float) -> float:
    return round(value, DECIMALS) + 0.0  # + 0.0: never "-0.0"


def _open(path: Path) -> Image.Image:
    from PIL import Image

    with Image.open(path) as picture:
        return picture.convert("RGB")


def _config_digest(folder: Path) -> str | None:
    import hashlib

    try:
        return hashlib.sha256((folder / "config.json").read_bytes()).hexdigest()[:16]
    except OSError:
        return None


def _missing_weights(model: str, source: str, exc: BaseException) -> EngineError:
    from .diffusion.runtime import first_line
    from .diffusion.weights import hub_repo_dir

    lines = [f"consistency: the weights of {model} are not on this machine"]
    if source == "folder":
        lines.append(f"  looked for a transformers model (config.json) in {model}")
    else:
        lines.append(f"  looked in the Hugging Face cache: {hub_repo_dir(model)}")
        lines.append(f"  download them with: huggingface-cli download {model}")
        lines.append('  or point [check] consistency at a local copy: model = "/path/to/folder"')
    lines.append(f"  ({first_line(exc)})")
    return EngineError("\n".join(lines))
