"""The comfyui engine against a stand-in ComfyUI server on 127.0.0.1 (tests/comfyui_server.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from comfyui_server import CHECKPOINTS, ComfyUIServer, seed_color
from conftest import REPO, SMALL_DRAMA, fanren, ran, write_drama
from PIL import Image
from speech_servers import closed_port_url

from fanren.compile import compile_project, resolve_engines
from fanren.engines.base import Request
from fanren.engines.comfyui import ComfyUIImageEngine, ComfyUIVideoEngine
from fanren.errors import DramaError, EngineError
from fanren.media import probe
from fanren.project import load_project

EXAMPLES = REPO / "examples" / "comfyui"
KEYFRAME = json.loads((EXAMPLES / "keyframe.json").read_text())
CLIP = json.loads((EXAMPLES / "clip.json").read_text())
CLIP_INPUTS = {"frames": "50.inputs.length"}


@pytest.fixture(scope="module")
def module_server() -> Iterator[ComfyUIServer]:
    with ComfyUIServer() as server:
        yield server


@pytest.fixture
def server(module_server: ComfyUIServer) -> ComfyUIServer:
    module_server._faults.clear()
    module_server.release_hangs()
    module_server.prompts.clear()
    module_server.uploads.clear()
    return module_server


def write_workflow(folder: Path, name: str, workflow: dict[str, Any]) -> Path:
    path = folder / name
    path.write_text(json.dumps(workflow, indent=2), encoding="utf-8")
    return path


def changed(workflow: dict[str, Any], node: str, **inputs: Any) -> dict[str, Any]:
    copy = json.loads(json.dumps(workflow))
    copy[node]["inputs"].update(inputs)
    return copy


def keyframe_request(tmp_path: Path, seed: int = 11, size: tuple[int, int] = (64, 48),
                     prompt: str = "a mountain gate") -> Request:
    out = tmp_path / f"out-{seed}-{len(list(tmp_path.glob('out-*')))}"
    out.mkdir()
    return Request(node_id="keyframe:s1", kind="keyframe", out_dir=out, inputs={},
                   params={"shot_id": "s1", "prompt": prompt, "seed": seed, "size": list(size)})


def clip_request(tmp_path: Path, keyframe: Path, fps: int = 8, size: tuple[int, int] = (64, 48)) -> Request:
    out = tmp_path / f"clip-{len(list(tmp_path.glob('clip-*')))}"
    out.mkdir()
    return Request(node_id="clip:s1", kind="clip", out_dir=out, inputs={"keyframe:s1": {"image.png": keyframe}},
                   params={"shot_id": "s1", "prompt": "she turns", "seed": 5, "size": list(size), "fps": fps})


def image_engine(server: ComfyUIServer, workflow: Path, **options: Any) -> ComfyUIImageEngine:
    return ComfyUIImageEngine({"url": server.url, "workflow": str(workflow), **options})


def video_engine(server: ComfyUIServer, workflow: Path, **options: Any) -> ComfyUIVideoEngine:
    return ComfyUIVideoEngine({"url": server.url, "workflow": str(workflow), "inputs": CLIP_INPUTS,
                               "frames": 5, **options})


def a_keyframe(tmp_path: Path) -> Path:
    path = tmp_path / "keyframe.png"
    Image.new("RGB", (64, 48), (10, 120, 200)).save(path)
    return path


# ── rendering ────────────────────────────────────────────────────────────────


def test_a_keyframe_carries_the_prompt_seed_and_size_into_the_workflow(server: ComfyUIServer, tmp_path: Path) -> None:
    engine = image_engine(server, write_workflow(tmp_path, "k.json", KEYFRAME))
    steps: list[float] = []
    request = keyframe_request(tmp_path, seed=11)
    request = Request(**{**request.__dict__, "progress": lambda f, m: steps.append(f)})
    files = engine.run(request)
    sent = server.prompts[-1]["prompt"]
    assert (sent["6"]["inputs"]["text"], sent["3"]["inputs"]["seed"]) == ("a mountain gate", 11)
    assert (sent["5"]["inputs"]["width"], sent["5"]["inputs"]["height"]) == (64, 48)
    assert sent["7"]["inputs"]["text"] == "text, watermark, blurry"  # what fanren does not name stays
    with Image.open(files["image.png"]) as image:
        assert (image.format, image.size, image.getpixel((63, 0))) == ("PNG", (64, 48), seed_color(11))
        assert image.info == {}  # ComfyUI's embedded workflow text is not kept
    assert steps[0] == 0.0 and steps[-1] == 1.0 and len(steps) == 2 + 20  # a step each of KSampler's 20


def test_same_request_same_bytes(server: ComfyUIServer, tmp_path: Path) -> None:
    engine = image_engine(server, write_workflow(tmp_path, "k.json", KEYFRAME))
    first = engine.run(keyframe_request(tmp_path))["image.png"].read_bytes()
    second = engine.run(keyframe_request(tmp_path))["image.png"].read_bytes()
    assert first == second
    clips = [video_engine(server, write_workflow(tmp_path, "c.json", CLIP)).run(
        clip_request(tmp_path, a_keyframe(tmp_path)))["clip.mp4"].read_bytes() for _ in range(2)]
    assert clips[0] == clips[1]


def test_a_clip_uploads_its_keyframe_and_takes_the_saved_video(server: ComfyUIServer, tmp_path: Path) -> None:
    keyframe = a_keyframe(tmp_path)
    files = video_engine(server, write_workflow(tmp_path, "c.json", CLIP)).run(clip_request(tmp_path, keyframe))
    (name, content), = server.uploads
    sent = server.prompts[-1]["prompt"]
    assert content == keyframe.read_bytes()
    assert sent["52"]["inputs"]["image"] == f"fanren/{name}"
    assert (sent["50"]["inputs"]["length"], sent["57"]["inputs"]["fps"], sent["50"]["inputs"]["width"]) == (5, 8, 64)
    info = probe(files["clip.mp4"])
    assert (info.size, info.frames, info.fps, info.audio) == ((64, 48), 5, 8.0, None)


@pytest.mark.parametrize("saving", ["VHS_VideoCombine", "VHS_VideoCombine:gif", "SaveAnimatedWEBP", "SaveImage"])
def test_a_clip_from_every_kind_of_saving_node(server: ComfyUIServer, tmp_path: Path, saving: str) -> None:
    workflow = json.loads(json.dumps(CLIP))
    del workflow["57"], workflow["58"]
    saving, _, variant = saving.partition(":")
    workflow["60"] = {"class_type": saving, "inputs": {
        "VHS_VideoCombine": {"images": ["8", 0], "frame_rate": 8, "loop_count": 0, "filename_prefix": "v",
                             "format": "image/gif" if variant else "video/h264-mp4", "pingpong": False,
                             "save_output": True},
        "SaveAnimatedWEBP": {"images": ["8", 0], "filename_prefix": "w", "fps": 8.0, "lossless": True,
                             "quality": 90, "method": "default"},
        "SaveImage": {"images": ["8", 0], "filename_prefix": "frames"},
    }[saving]}
    files = video_engine(server, write_workflow(tmp_path, "c.json", workflow)).run(
        clip_request(tmp_path, a_keyframe(tmp_path), fps=12))
    info = probe(files["clip.mp4"])
    assert (info.size, info.frames, info.fps) == ((64, 48), 5, 12.0)
    assert sorted(p.name for p in files["clip.mp4"].parent.iterdir()) == ["clip.mp4"]


def test_without_a_websocket_the_history_is_polled(server: ComfyUIServer, tmp_path: Path) -> None:
    engine = image_engine(server, write_workflow(tmp_path, "k.json", KEYFRAME))
    server.fail_next("no_websocket")
    refused = engine.run(keyframe_request(tmp_path, seed=3))["image.png"].read_bytes()
    server.fail_next("drop_websocket")
    dropped = engine.run(keyframe_request(tmp_path, seed=3))["image.png"].read_bytes()
    assert refused == dropped == engine.run(keyframe_request(tmp_path, seed=3))["image.png"].read_bytes()
    assert len(server.prompts) == 3


# ── failures ─────────────────────────────────────────────────────────────────


def failure(engine: ComfyUIImageEngine | ComfyUIVideoEngine, request: Request) -> str:
    with pytest.raises(EngineError) as caught:
        engine.run(request)
    return str(caught.value)


def test_a_server_that_is_down(tmp_path: Path) -> None:
    path = write_workflow(tmp_path, "k.json", KEYFRAME)
    url = closed_port_url()
    engine = ComfyUIImageEngine({"url": url, "workflow": str(path)})
    assert failure(engine, keyframe_request(tmp_path)) == (
        f"ComfyUI at {url} with workflow {path}: POST /prompt: connection refused (is the server running?); "
        "start ComfyUI (python main.py --listen 127.0.0.1 --port 8188) or set url in the profile")


def test_a_workflow_the_server_refuses_names_each_node_and_its_error(server: ComfyUIServer, tmp_path: Path) -> None:
    path = write_workflow(tmp_path, "k.json", changed(KEYFRAME, "4", ckpt_name="sdxl.safetensors"))
    assert failure(image_engine(server, path), keyframe_request(tmp_path)) == (
        f"ComfyUI at {server.url} with workflow {path}: the server refused the workflow: Prompt outputs failed "
        f"validation; node 4 (CheckpointLoaderSimple): Value not in list: ckpt_name: 'sdxl.safetensors' not in "
        f"{CHECKPOINTS}")
    unknown = json.loads(json.dumps(KEYFRAME))
    unknown["8"]["class_type"] = "VAEDecodeTiled2"
    path = write_workflow(tmp_path, "u.json", unknown)
    assert failure(image_engine(server, path), keyframe_request(tmp_path)) == (
        f"ComfyUI at {server.url} with workflow {path}: the server refused the workflow: Cannot execute because "
        "node VAEDecodeTiled2 does not exist. (Node ID '#8')")


@pytest.mark.parametrize("fault", [None, "no_websocket"])
def test_a_node_that_fails_while_running(server: ComfyUIServer, tmp_path: Path, fault: str | None) -> None:
    path = write_workflow(tmp_path, "k.json", changed(KEYFRAME, "4", ckpt_name="broken.safetensors"))
    if fault:
        server.fail_next(fault)  # then the error is read from the history's status messages
    assert failure(image_engine(server, path), keyframe_request(tmp_path)) == (
        f"ComfyUI at {server.url} with workflow {path}: node 4 (CheckpointLoaderSimple) failed: "
        "safetensors_rust.SafetensorError: Error while deserializing header: HeaderTooLarge")


@pytest.mark.parametrize("polling", [False, True])
def test_a_prompt_cancelled_on_the_server(server: ComfyUIServer, tmp_path: Path, polling: bool) -> None:
    path = write_workflow(tmp_path, "k.json", KEYFRAME)
    server.fail_next(*(["no_websocket"] if polling else []), "interrupt")
    assert failure(image_engine(server, path), keyframe_request(tmp_path)) == (
        f"ComfyUI at {server.url} with workflow {path}: the prompt was interrupted at node 3 (KSampler): someone "
        "pressed Cancel in ComfyUI or called POST /interrupt")


def test_a_history_without_outputs(server: ComfyUIServer, tmp_path: Path) -> None:
    path = write_workflow(tmp_path, "k.json", KEYFRAME)
    server.fail_next("no_outputs")
    assert failure(image_engine(server, path), keyframe_request(tmp_path)) == (
        f"ComfyUI at {server.url} with workflow {path}: the prompt finished with no outputs at all (was every "
        "output node cached with nothing saved, or did the server drop them?)")


def test_an_output_node_that_saves_nothing(server: ComfyUIServer, tmp_path: Path) -> None:
    path = write_workflow(tmp_path, "k.json", KEYFRAME)
    assert failure(image_engine(server, path, output="8"), keyframe_request(tmp_path)) == (
        f"ComfyUI at {server.url} with workflow {path}: the output node 8 (VAEDecode) gave no files (outputs came "
        "from node 9 (SaveImage); the profile's output option names the node whose files are the result)")


def test_outputs_of_the_wrong_type(server: ComfyUIServer, tmp_path: Path) -> None:
    clip = write_workflow(tmp_path, "c.json", CLIP)
    image = ComfyUIImageEngine({"url": server.url, "workflow": str(clip)})
    request = keyframe_request(tmp_path)
    request = Request(**{**request.__dict__, "inputs": {"character:lin": {"image.png": a_keyframe(tmp_path)}}})
    message = failure(image, request)
    assert message == (
        f"ComfyUI at {server.url} with workflow {clip}: the output node 58 (SaveVideo) gave 1 file "
        f"({_last_saved(server, '58')}); a keyframe needs an image (a PNG, JPEG or WebP from SaveImage)")
    keyframe = write_workflow(tmp_path, "k.json", KEYFRAME)
    video = ComfyUIVideoEngine({"url": server.url, "workflow": str(keyframe)})
    message = failure(video, clip_request(tmp_path, a_keyframe(tmp_path)))
    assert message == (
        f"ComfyUI at {server.url} with workflow {keyframe}: the output node 9 (SaveImage) gave 1 file "
        f"({_last_saved(server, '9')}); a clip needs a video (SaveVideo, VHS_VideoCombine) or a sequence of at "
        "least 2 frames (SaveImage)")


def _last_saved(server: ComfyUIServer, node: str) -> str:
    """The name of the file `node` saved in the server's last prompt."""
    last = list(server.history.values())[-1]
    return str(last["outputs"][node]["images"][0]["filename"])


def test_a_workflow_that_takes_an_image_the_node_does_not_have(server: ComfyUIServer, tmp_path: Path) -> None:
    path = write_workflow(tmp_path, "c.json", CLIP)
    engine = ComfyUIImageEngine({"url": server.url, "workflow": str(path)})
    assert failure(engine, keyframe_request(tmp_path)) == (
        f"ComfyUI at {server.url} with workflow {path}: the workflow takes an image (52.inputs.image) but "
        "keyframe:s1 has none to give it")
    assert server.prompts == []


def test_a_prompt_that_never_finishes(server: ComfyUIServer, tmp_path: Path) -> None:
    path = write_workflow(tmp_path, "k.json", KEYFRAME)
    server.fail_next("hang")
    message = failure(image_engine(server, path, timeout=1), keyframe_request(tmp_path))
    prompt_id = message.split("the prompt ")[1].split()[0]
    assert message == (f"ComfyUI at {server.url} with workflow {path}: the prompt {prompt_id} did not finish "
                       "within 1 s (the profile's timeout option)")


# ── a drama ──────────────────────────────────────────────────────────────────


def comfy_drama(folder: Path, url: str) -> Path:
    profile = f"""
[profiles.comfy]
image = {{ engine = "comfyui", url = "{url}", workflow = "workflows/keyframe.json" }}
video = {{ engine = "comfyui", url = "{url}", workflow = "workflows/clip.json", frames = 5, fps = 8, size = [96, 64], inputs = {{ frames = "50.inputs.length" }} }}
"""
    drama = write_drama(folder, SMALL_DRAMA + profile)
    (drama / "workflows").mkdir()
    shutil.copy(EXAMPLES / "keyframe.json", drama / "workflows" / "keyframe.json")
    shutil.copy(EXAMPLES / "clip.json", drama / "workflows" / "clip.json")
    return drama


def test_a_drama_builds_with_comfyui_and_rebuilds_only_what_a_workflow_edit_changes(
        server: ComfyUIServer, tmp_path: Path) -> None:
    drama = comfy_drama(tmp_path / "drama", server.url)
    result = fanren("build", drama, "--profile", "comfy")
    assert result.code == 0, result.stderr
    graph = compile_project(load_project(drama), resolve_engines(load_project(drama), "comfy"))
    pictures = {n.id for n in graph.nodes.values() if n.kind in ("character", "keyframe", "clip")}
    assert pictures == {"character:lin", "character:elder", "keyframe:s1", "keyframe:s2", "keyframe:s3",
                        "clip:s1", "clip:s2", "clip:s3"}
    assert pictures <= ran(drama, "comfy")
    sent = {(p["prompt"]["6"]["inputs"]["text"], p["prompt"]["3"]["inputs"]["seed"]) for p in server.prompts}
    assert sent == {(n.params["prompt"], n.params["seed"]) for n in graph.nodes.values() if n.id in pictures}
    episode = probe(drama / "out" / "comfy" / "episode.mp4")
    assert episode.video is not None and episode.audio is not None

    assert fanren("build", drama, "--profile", "comfy").code == 0
    assert ran(drama, "comfy") == set()
    assert len(server.prompts) == len(pictures)

    # same key, same bytes: every node rendered again, the pictures asked of the server again
    result = fanren("build", drama, "--profile", "comfy", "--check")
    assert result.code == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "checked 18 nodes: every one gave the same bytes again"
    assert len(server.prompts) == 2 * len(pictures)

    # More sampler steps: every picture is asked again; the stand-in draws the same, so nothing after
    # them renders (early cutoff)
    workflow = drama / "workflows" / "keyframe.json"
    workflow.write_text(json.dumps(changed(KEYFRAME, "3", steps=21)), encoding="utf-8")
    result = fanren("build", drama, "--profile", "comfy")
    assert result.code == 0, result.stderr
    assert ran(drama, "comfy") == {"character:lin", "character:elder", "keyframe:s1", "keyframe:s2", "keyframe:s3"}


def test_a_failing_server_fails_the_node_and_names_server_and_workflow(server: ComfyUIServer, tmp_path: Path) -> None:
    drama = comfy_drama(tmp_path / "drama", closed_port_url())
    result = fanren("build", drama, "--profile", "comfy")
    workflow = (drama / "workflows" / "keyframe.json").resolve()
    assert result.code == 1
    url = result.stderr.split("ComfyUI at ")[1].split()[0]
    assert (f"  character:elder: ComfyUI at {url} with workflow {workflow}: POST /prompt: connection refused "
            "(is the server running?); start ComfyUI") in result.stderr


# ── bad profile options: exit 2 before anything runs ─────────────────────────


def problem(drama: Path, profile: str = "comfy") -> str:
    with pytest.raises(DramaError) as caught:
        resolve_engines(load_project(drama), profile)
    return caught.value.show()


def with_image(tmp_path: Path, options: str, workflow: dict[str, Any] | str | None = None) -> Path:
    drama = write_drama(tmp_path / "drama", SMALL_DRAMA + f"\n[profiles.comfy]\nimage = {{ engine = \"comfyui\", {options} }}\n")
    if workflow is not None:
        (drama / "w.json").write_text(workflow if isinstance(workflow, str) else json.dumps(workflow), encoding="utf-8")
    return drama


def test_a_missing_workflow_file_is_exit_2(tmp_path: Path, server: ComfyUIServer) -> None:
    drama = with_image(tmp_path, 'workflow = "workflows/nope.json"')
    result = fanren("build", drama, "--profile", "comfy")
    assert result.code == 2
    assert result.stderr.strip() == (f"error: {drama / 'drama.toml'}: profiles.comfy.image.workflow: expected a file "
                                     "in the drama folder, got 'workflows/nope.json', which does not exist")
    assert server.prompts == []


def test_a_ui_format_workflow_says_how_to_export_the_api_format(tmp_path: Path) -> None:
    ui = {"last_node_id": 9, "last_link_id": 9, "nodes": [{"id": 3, "type": "KSampler"}], "links": [], "version": 0.4}
    drama = with_image(tmp_path, 'workflow = "w.json"', ui)
    assert problem(drama) == (
        f"error: {drama / 'drama.toml'}: profiles.comfy.image.workflow: expected ComfyUI's API format: an object of "
        f"node id → {{\"class_type\": ..., \"inputs\": {{...}}}}, got {(drama / 'w.json').resolve()}, a workflow in "
        "ComfyUI's UI format (it has \"nodes\" and \"links\") (in ComfyUI, open the workflow and use Workflow → "
        "Export (API); older versions show 'Save (API Format)' once 'Enable Dev mode Options' is on in the settings)")


def test_input_places_are_checked_against_the_workflow(tmp_path: Path) -> None:
    drama = with_image(tmp_path, 'workflow = "w.json", inputs = { seed = "3.inputs.sed" }', KEYFRAME)
    assert problem(drama) == (
        f"error: {drama / 'drama.toml'}: profiles.comfy.image.inputs.seed: expected an input the node has, got "
        "'3.inputs.sed' (node 3 (KSampler) has inputs: cfg, denoise, latent_image, model, negative, positive, "
        "sampler_name, scheduler, seed, steps)")
    shutil.rmtree(drama)
    drama = with_image(tmp_path, 'workflow = "w.json", inputs = { seed = "30.inputs.seed" }', KEYFRAME)
    assert problem(drama) == (
        f"error: {drama / 'drama.toml'}: profiles.comfy.image.inputs.seed: expected \"<node id>.inputs.<input name>\" "
        "of a node in the workflow, got '30.inputs.seed' (the workflow has no node 30; its nodes: 3 (KSampler), "
        "4 (CheckpointLoaderSimple), 5 (EmptyLatentImage), 6 (CLIPTextEncode), 7 (CLIPTextEncode), 8 (VAEDecode), "
        "9 (SaveImage))")
    shutil.rmtree(drama)
    drama = with_image(tmp_path, 'workflow = "w.json", inputs = { prompt = "3.inputs.positive" }', KEYFRAME)
    assert problem(drama) == (
        f"error: {drama / 'drama.toml'}: profiles.comfy.image.inputs.prompt: expected an input that holds a value, "
        "not a link, got '3.inputs.positive' (node 3 (KSampler) takes positive from node 6 (CLIPTextEncode): "
        "name that node's input instead)")
    shutil.rmtree(drama)
    drama = with_image(tmp_path, 'workflow = "w.json", inputs = { frames = "5.inputs.batch_size" }', KEYFRAME)
    assert problem(drama) == (
        f"error: {drama / 'drama.toml'}: profiles.comfy.image.inputs.frames: expected one of height, image, prompt, "
        "seed, width, got 'frames'")


def test_a_workflow_without_a_prompt_or_an_output(tmp_path: Path) -> None:
    untitled = json.loads(json.dumps(KEYFRAME))
    untitled["6"]["_meta"]["title"] = "CLIP Text Encode"
    drama = with_image(tmp_path, 'workflow = "w.json"', untitled)
    assert problem(drama) == (
        f"error: {drama / 'drama.toml'}: profiles.comfy.image.inputs: expected the workflow's prompt input: "
        "inputs.prompt = \"<node id>.inputs.text\" or a node titled fanren.prompt, got none (its nodes: "
        "3 (KSampler), 4 (CheckpointLoaderSimple), 5 (EmptyLatentImage), 6 (CLIPTextEncode), 7 (CLIPTextEncode), "
        "8 (VAEDecode), 9 (SaveImage))")
    shutil.rmtree(drama)
    two = json.loads(json.dumps(KEYFRAME))
    two["10"] = {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}}
    drama = with_image(tmp_path, 'workflow = "w.json"', two)
    assert problem(drama) == (
        f"error: {drama / 'drama.toml'}: profiles.comfy.image.output: expected the id of the workflow's node whose "
        "files are the result (or a node titled fanren.output), got none (the workflow has 2 saving nodes: "
        "9 (SaveImage), 10 (PreviewImage))")


def test_the_key_holds_the_workflow_not_the_url(tmp_path: Path) -> None:
    path = write_workflow(tmp_path, "k.json", KEYFRAME)
    here = ComfyUIImageEngine({"url": "http://127.0.0.1:8188", "workflow": str(path), "timeout": 5})
    there = ComfyUIImageEngine({"url": "http://gpu-box:8188", "workflow": str(path)})
    assert here.identity() == there.identity()
    path.write_text(json.dumps(KEYFRAME), encoding="utf-8")  # reformatted, same workflow
    assert ComfyUIImageEngine({"workflow": str(path)}).identity() == here.identity()
    edited = write_workflow(tmp_path, "k2.json", changed(KEYFRAME, "4", ckpt_name="other.safetensors"))
    assert ComfyUIImageEngine({"workflow": str(edited)}).identity() != here.identity()
    labelled = ComfyUIImageEngine({"workflow": str(path), "label": "sdxl-2025-06"})
    assert labelled.identity()["options"]["label"] == "sdxl-2025-06"


def test_the_engine_module_loads_no_http_or_websocket_client() -> None:
    code = ("import sys, fanren.engines.comfyui\n"
            "print('HEAVY', sorted(m for m in ('torch', 'numpy', 'httpx', 'websockets') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=REPO)
    assert out.stdout.strip() == "HEAVY []", out.stdout + out.stderr


@pytest.mark.parametrize(("family", "options", "key", "expected"), [
    ("video", 'workflow = "w.json", frames = 0', "video.frames",
     "expected the number of frames the workflow renders (1 to 10000), got 0"),
    ("video", 'workflow = "w.json", size = [100, 33]', "video.size",
     "expected [width, height] in even pixels from 16 to 8192, got [100, 33]"),
    ("image", 'workflow = "w.json", timeout = -1', "image.timeout",
     "expected seconds a prompt may take, more than 0, got -1"),
    ("image", 'workflow = "w.json", url = "ftp://gpu-box"', "image.url",
     "expected an http:// or https:// URL, got 'ftp://gpu-box'"),
    ("image", 'url = "http://127.0.0.1:8188"', "image.workflow",
     "expected the path of a workflow file in ComfyUI's API format, relative to the drama folder, got None"),
    ("image", 'workflow = "w.json", frames = 10', "image.frames",
     "expected an option of engine 'comfyui' (known options: inputs, label, output, timeout, url, workflow)"),
])
def test_bad_option_values(tmp_path: Path, family: str, options: str, key: str, expected: str) -> None:
    drama = write_drama(tmp_path / "drama", SMALL_DRAMA + f"\n[profiles.comfy]\n{family} = {{ engine = \"comfyui\", "
                        f"{options} }}\n")
    (drama / "w.json").write_text(json.dumps(CLIP), encoding="utf-8")
    assert problem(drama) == f"error: {drama / 'drama.toml'}: profiles.comfy.{key}: {expected}"


def test_a_workflow_that_is_not_json_or_has_an_unknown_title(tmp_path: Path) -> None:
    drama = with_image(tmp_path, 'workflow = "w.json"', '{"3": {"class_type": "KSampler",}')
    path = (drama / "w.json").resolve()
    assert problem(drama) == (
        f"error: {drama / 'drama.toml'}: profiles.comfy.image.workflow: expected a JSON file in ComfyUI's API "
        f"format: an object of node id → {{\"class_type\": ..., \"inputs\": {{...}}}}, got {path}: invalid JSON at "
        "line 1 column 33 (Expecting property name enclosed in double quotes)")
    shutil.rmtree(drama)
    titled = json.loads(json.dumps(KEYFRAME))
    titled["7"]["_meta"]["title"] = "fanren.negative"
    drama = with_image(tmp_path, 'workflow = "w.json"', titled)
    assert problem(drama) == (
        f"error: {drama / 'drama.toml'}: profiles.comfy.image.workflow: expected node titles fanren.<input> with "
        f"inputs height, image, output, prompt, seed, size, width, got {(drama / 'w.json').resolve()}: node 7 is "
        "titled 'fanren.negative'")


def test_a_password_in_the_url_is_never_shown(tmp_path: Path) -> None:
    path = write_workflow(tmp_path, "k.json", KEYFRAME)
    url = closed_port_url().replace("http://", "http://fanren:hunter2-secret@")
    message = failure(ComfyUIImageEngine({"url": url, "workflow": str(path)}), keyframe_request(tmp_path))
    assert "hunter2-secret" not in message
    assert message.startswith(f"ComfyUI at {url.replace('hunter2-secret', '***')} with workflow {path}: ")


def test_an_image_to_image_keyframe_starts_from_the_first_character_portrait(
        server: ComfyUIServer, tmp_path: Path) -> None:
    workflow = json.loads(json.dumps(KEYFRAME))
    workflow["10"] = {"class_type": "LoadImage", "inputs": {"image": "example.png"}, "_meta": {"title": "fanren.image"}}
    workflow["11"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}}
    workflow["3"]["inputs"]["latent_image"] = ["11", 0]
    workflow["12"] = {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}}
    workflow["9"]["_meta"]["title"] = "fanren.output"  # two saving nodes: the title picks one
    portrait, other = tmp_path / "lin.png", tmp_path / "elder.png"
    Image.new("RGB", (64, 48), (250, 20, 30)).save(portrait)
    Image.new("RGB", (64, 48), (0, 0, 0)).save(other)
    request = keyframe_request(tmp_path)
    request = Request(**{**request.__dict__, "inputs": {"character:lin": {"image.png": portrait},
                                                         "character:elder": {"image.png": other}}})
    files = image_engine(server, write_workflow(tmp_path, "i2i.json", workflow)).run(request)
    (name, content), = server.uploads
    assert content == portrait.read_bytes()
    assert server.prompts[-1]["prompt"]["10"]["inputs"]["image"] == f"fanren/{name}"
    with Image.open(files["image.png"]) as image:
        assert image.getpixel((63, 0)) == (250, 20, 30)
