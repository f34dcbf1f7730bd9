"""A stand-in ComfyUI server on 127.0.0.1: ComfyUI's HTTP and websocket protocol, real sockets.

It answers like comfyanonymous/ComfyUI's server.py and execution.py: POST /upload/image, POST /prompt
(200 {"prompt_id", "number", "node_errors"}, or 400 {"error", "node_errors"} in the shapes
validate_prompt builds: invalid_prompt, prompt_no_outputs, value_not_in_list, required_input_missing,
custom_validation_failed), GET /history/<id>, GET /view, GET /system_stats and the websocket
/ws?clientId= with status, execution_start, execution_cached, executing, progress, executed,
execution_success and execution_error messages.

Instead of models it runs a handful of node types for real, so tests can see the inputs were wired:
VAEDecode draws each frame — the start image (LoadImage) or a colour from the sampler's seed, with
the prompt and the seed written on it and a square that moves with the frame number — and the
saving nodes write PNGs (SaveImage), MP4s with ffmpeg (SaveVideo, VHS_VideoCombine) or an animated
WebP with Pillow (SaveAnimatedWEBP). The checkpoint "broken.safetensors" passes validation and
fails while running, as a corrupt file does.

`server.fail_next(...)` makes the next prompt fail the ways a real server or network does:
"no_websocket" (the upgrade is refused), "drop_websocket" (it closes after execution_start),
"no_outputs" (the history entry has none), "interrupt" (Cancel pressed at the sampler), "hang" (the prompt does not finish until
`release_hangs()` or HANG_SECONDS).
"""

from __future__ import annotations

import asyncio
import json
import queue
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
import zlib
from collections import deque
from pathlib import Path
from typing import Any, Self

import uvicorn
from PIL import Image, ImageDraw
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

CHECKPOINTS = ["tiny-sd.safetensors", "tiny-wan.safetensors", "broken.safetensors"]
OUTPUT_NODES = {"SaveImage", "PreviewImage", "SaveVideo", "VHS_VideoCombine", "SaveAnimatedWEBP"}
# class type → its required inputs, as INPUT_TYPES declares them
REQUIRED = {
    "CheckpointLoaderSimple": ("ckpt_name",),
    "CLIPTextEncode": ("text", "clip"),
    "EmptyLatentImage": ("width", "height", "batch_size"),
    "LoadImage": ("image",),
    "WanImageToVideo": ("positive", "negative", "vae", "width", "height", "length", "batch_size"),
    "KSampler": ("model", "seed", "steps", "cfg", "sampler_name", "scheduler", "positive", "negative",
                 "latent_image", "denoise"),
    "VAEDecode": ("samples", "vae"),
    "VAEEncode": ("pixels", "vae"),
    "SaveImage": ("images", "filename_prefix"),
    "PreviewImage": ("images",),
    "CreateVideo": ("images", "fps"),
    "SaveVideo": ("video", "filename_prefix", "format", "codec"),
    "VHS_VideoCombine": ("images", "frame_rate", "loop_count", "filename_prefix", "format", "pingpong",
                         "save_output"),
    "SaveAnimatedWEBP": ("images", "filename_prefix", "fps", "lossless", "quality", "method"),
}
HANG_SECONDS = 30.0


def seed_color(seed: int) -> tuple[int, int, int]:
    """The background of a picture drawn without a start image: tests compute it too."""
    value = zlib.crc32(str(seed).encode())
    return (value & 0xFF, (value >> 8) & 0xFF, (value >> 16) & 0xFF)


class ComfyUIServer:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="comfyui-"))
        self.input_dir, self.output_dir = self.root / "input", self.root / "output"
        self.input_dir.mkdir()
        self.output_dir.mkdir()
        self.prompts: list[dict[str, Any]] = []       # every POST /prompt body, as received
        self.uploads: list[tuple[str, bytes]] = []     # (name, bytes) of every upload
        self.history: dict[str, dict[str, Any]] = {}
        self._faults: deque[str] = deque()
        self._jobs: queue.Queue[tuple[str, dict[str, Any], str, set[str]] | None] = queue.Queue()
        self._sockets: dict[str, asyncio.Queue[str | None]] = {}
        self._loops: dict[str, asyncio.AbstractEventLoop] = {}
        self._counter = 0
        self._number = 0
        self._lock = threading.Lock()
        self._unhang = threading.Event()  # ends a hanging prompt (release_hangs, stop)
        self.url = ""

    # ── life ─────────────────────────────────────────────────────────────────

    def start(self) -> Self:
        app = Starlette(routes=[
            Route("/prompt", self.post_prompt, methods=["POST"]),
            Route("/history/{prompt_id}", self.get_history, methods=["GET"]),
            Route("/view", self.view, methods=["GET"]),
            Route("/upload/image", self.upload_image, methods=["POST"]),
            Route("/system_stats", self.system_stats, methods=["GET"]),
            WebSocketRoute("/ws", self.websocket),
        ])
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", ws="websockets-sansio"
                                if _has_sansio() else "websockets", lifespan="off",
                                timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            assert time.monotonic() < deadline and self._thread.is_alive(), "the stand-in ComfyUI did not start"
            time.sleep(0.02)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self._worker = threading.Thread(target=self._execute_jobs, daemon=True)
        self._worker.start()
        return self

    def stop(self) -> None:
        self._unhang.set()
        self._jobs.put(None)
        with self._lock:
            open_sockets = list(self._sockets)
        for sid in open_sockets:  # their handlers wait on the outbox, not the socket: end them
            self._send(sid, "close", None)
        self._server.should_exit = True
        self._thread.join(30)
        self._worker.join(30)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail_next(self, *faults: str) -> None:
        with self._lock:
            if "hang" in faults:
                self._unhang.clear()
            self._faults.extend(faults)

    def release_hangs(self) -> None:
        """End a prompt that hangs (its history then says it failed), so the next one runs."""
        self._unhang.set()

    def _take_fault(self, names: tuple[str, ...]) -> str | None:
        with self._lock:
            if self._faults and self._faults[0] in names:
                return self._faults.popleft()
        return None

    # ── HTTP ─────────────────────────────────────────────────────────────────

    async def system_stats(self, request: Request) -> Response:
        return JSONResponse({"system": {"os": "posix", "comfyui_version": "0.3.60", "python_version": "3.12",
                                        "pytorch_version": "2.8.0", "embedded_python": False, "argv": ["main.py"]},
                             "devices": [{"name": "cpu", "type": "cpu", "index": None}]})

    async def upload_image(self, request: Request) -> Response:
        form = await request.form()
        image = form.get("image")
        if image is None or isinstance(image, str) or not image.filename:
            return Response(status_code=400)
        subfolder = str(form.get("subfolder", ""))
        folder = (self.input_dir / subfolder).resolve()
        if not str(folder).startswith(str(self.input_dir.resolve())):
            return Response(status_code=400)
        folder.mkdir(parents=True, exist_ok=True)
        content = await image.read()
        (folder / image.filename).write_bytes(content)
        self.uploads.append((image.filename, content))
        return JSONResponse({"name": image.filename, "subfolder": subfolder, "type": "input"})

    async def post_prompt(self, request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return Response("400: Bad Request", status_code=400)
        self.prompts.append(body)
        number = self._number
        self._number += 1
        if "prompt" not in body:
            return JSONResponse({"error": "no prompt", "node_errors": []}, status_code=400)
        prompt = body["prompt"]
        ok, error, outputs, node_errors = self._validate(prompt)
        if not ok:
            return JSONResponse({"error": error, "node_errors": node_errors}, status_code=400)
        prompt_id = str(uuid.uuid4())
        self._jobs.put((prompt_id, prompt, str(body.get("client_id", "")), outputs))
        return JSONResponse({"prompt_id": prompt_id, "number": number, "node_errors": node_errors})

    async def get_history(self, request: Request) -> Response:
        prompt_id = request.path_params["prompt_id"]
        with self._lock:
            entry = self.history.get(prompt_id)
            return JSONResponse({prompt_id: json.loads(json.dumps(entry))} if entry else {})

    async def view(self, request: Request) -> Response:
        filename = request.query_params.get("filename", "")
        if not filename or filename[0] == "/" or ".." in filename:
            return Response(status_code=400)
        folder = {"output": self.output_dir, "input": self.input_dir}.get(request.query_params.get("type", "output"))
        if folder is None:
            return Response(status_code=400)
        file = folder / request.query_params.get("subfolder", "") / Path(filename).name
        if not file.is_file():
            return Response(status_code=404)
        return FileResponse(file, headers={"Content-Disposition": f'filename="{file.name}"'})

    async def websocket(self, websocket: WebSocket) -> None:
        if self._take_fault(("no_websocket",)):
            await websocket.close(code=1008)  # before accept: the upgrade is refused with a 403
            return
        await websocket.accept()
        sid = websocket.query_params.get("clientId") or uuid.uuid4().hex
        outbox: asyncio.Queue[str | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        with self._lock:
            self._sockets[sid] = outbox
            self._loops[sid] = loop
        await websocket.send_text(json.dumps({"type": "status", "data": {
            "status": {"exec_info": {"queue_remaining": self._jobs.qsize()}}, "sid": sid}}))
        # Like server.py's `async for msg in ws`: a client that goes away ends the handler.
        gone = asyncio.ensure_future(_until_disconnect(websocket))
        try:
            while True:
                next_message = asyncio.ensure_future(outbox.get())
                await asyncio.wait({next_message, gone}, return_when=asyncio.FIRST_COMPLETED)
                if gone.done():
                    next_message.cancel()
                    return
                message = next_message.result()
                if message is None:
                    await websocket.close()
                    return
                await websocket.send_text(message)
        except WebSocketDisconnect:
            pass
        finally:
            gone.cancel()
            with self._lock:
                if self._sockets.get(sid) is outbox:
                    del self._sockets[sid]

    def _send(self, sid: str, kind: str, data: dict[str, Any] | None) -> None:
        with self._lock:
            outbox, loop = self._sockets.get(sid), self._loops.get(sid)
        if outbox is not None and loop is not None:
            text = None if data is None else json.dumps({"type": kind, "data": data})
            loop.call_soon_threadsafe(outbox.put_nowait, text)

    # ── validation (execution.validate_prompt's shapes) ──────────────────────

    def _validate(self, prompt: dict[str, Any]) -> tuple[bool, Any, set[str], dict[str, Any]]:
        outputs: set[str] = set()
        for node, body in prompt.items():
            if "class_type" not in body:
                return False, {"type": "invalid_prompt", "message": "Cannot execute because a node is missing "
                               "the class_type property.", "details": f"Node ID '#{node}'", "extra_info": {}}, set(), {}
            if body["class_type"] not in REQUIRED:
                return False, {"type": "invalid_prompt", "message": f"Cannot execute because node "
                               f"{body['class_type']} does not exist.", "details": f"Node ID '#{node}'",
                               "extra_info": {}}, set(), {}
            if body["class_type"] in OUTPUT_NODES:
                outputs.add(node)
        if not outputs:
            return False, {"type": "prompt_no_outputs", "message": "Prompt has no outputs", "details": "",
                           "extra_info": {}}, set(), {}
        node_errors: dict[str, Any] = {}
        for node, body in prompt.items():
            errors = self._node_errors(body)
            if errors:
                node_errors[node] = {"errors": errors, "dependent_outputs": sorted(outputs),
                                     "class_type": body["class_type"]}
        if node_errors:
            details = "\n".join(f"{e['message']}: {e['details']}" for n in node_errors.values() for e in n["errors"])
            return False, {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
                           "details": details, "extra_info": {}}, set(), node_errors
        return True, None, outputs, {}

    def _node_errors(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        inputs = body.get("inputs", {})
        errors = []
        for name in REQUIRED[body["class_type"]]:
            if name not in inputs:
                errors.append({"type": "required_input_missing", "message": "Required input is missing",
                               "details": name, "extra_info": {"input_name": name}})
        ckpt = inputs.get("ckpt_name")
        if body["class_type"] == "CheckpointLoaderSimple" and ckpt is not None and ckpt not in CHECKPOINTS:
            errors.append({"type": "value_not_in_list", "message": "Value not in list",
                           "details": f"ckpt_name: '{ckpt}' not in {CHECKPOINTS}",
                           "extra_info": {"input_name": "ckpt_name", "received_value": ckpt}})
        if body["class_type"] == "LoadImage" and "image" in inputs and \
                not (self.input_dir / str(inputs["image"])).is_file():
            errors.append({"type": "custom_validation_failed", "message": "Custom validation failed for node",
                           "details": f"image - Invalid image file: {inputs['image']}",
                           "extra_info": {"input_name": "image"}})
        return errors

    # ── execution ────────────────────────────────────────────────────────────

    def _execute_jobs(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            prompt_id, prompt, sid, outputs = job
            fault = self._take_fault(("drop_websocket", "no_outputs", "hang", "interrupt"))
            messages: list[list[Any]] = []

            def message(kind: str, data: dict[str, Any], record: bool = True, prompt_id: str = prompt_id,
                        messages: list[list[Any]] = messages, sid: str = sid) -> None:
                data = {**data, "prompt_id": prompt_id}
                if record:
                    messages.append([kind, {**data, "timestamp": int(time.time() * 1000)}])
                self._send(sid, kind, data)

            message("execution_start", {})
            if fault == "drop_websocket":
                self._send(sid, "close", None)
            message("execution_cached", {"nodes": []})
            if fault == "hang":
                self._unhang.wait(HANG_SECONDS)
                continue
            values: dict[str, Any] = {}
            ui: dict[str, Any] = {}
            status = "success"
            try:
                for node in _order(prompt, outputs):
                    message("executing", {"node": node, "display_node": node}, record=False)
                    if fault == "interrupt" and prompt[node]["class_type"] == "KSampler":
                        raise Interrupted(node)
                    try:
                        values[node] = self._run_node(prompt, node, values, lambda v, m, n=node: message(
                            "progress", {"value": v, "max": m, "node": n}, record=False))
                    except NodeFailed:
                        raise
                    except Exception as exc:
                        raise NodeFailed(node, str(exc), type(exc).__qualname__) from exc
                    if node in outputs:
                        ui[node] = values[node]
                        message("executed", {"node": node, "display_node": node, "output": ui[node]}, record=False)
            except Interrupted as interrupted:  # execution.py: InterruptProcessingException
                status = "error"
                message("execution_interrupted", {"node_id": interrupted.node,
                                                  "node_type": prompt[interrupted.node]["class_type"],
                                                  "executed": sorted(values)})
            except NodeFailed as failure:
                status = "error"
                message("execution_error", {"node_id": failure.node, "node_type": prompt[failure.node]["class_type"],
                                            "executed": sorted(values), "exception_message": failure.message,
                                            "exception_type": failure.kind, "traceback": [],
                                            "current_inputs": {}, "current_outputs": {}})
            else:
                message("execution_success", {})
            message("executing", {"node": None}, record=False)
            with self._lock:
                self.history[prompt_id] = {
                    "prompt": [0, prompt_id, prompt, {"client_id": sid}, sorted(outputs)],
                    "outputs": {} if fault == "no_outputs" or status == "error" else ui,
                    "status": {"status_str": status, "completed": status == "success", "messages": messages},
                    "meta": {node: {"node_id": node, "display_node": node} for node in ui},
                }

    def _run_node(self, prompt: dict[str, Any], node: str, values: dict[str, Any], progress: Any) -> Any:
        body = prompt[node]
        kind = body["class_type"]

        def arg(name: str) -> Any:
            value = body["inputs"][name]
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                produced = values[value[0]]
                return produced[value[1]] if isinstance(produced, tuple) else produced
            return value

        if kind == "CheckpointLoaderSimple":
            if arg("ckpt_name") == "broken.safetensors":
                raise NodeFailed(node, "Error while deserializing header: HeaderTooLarge",
                                 "safetensors_rust.SafetensorError")
            return ("model", "clip", "vae")
        if kind == "CLIPTextEncode":
            return {"text": str(arg("text"))}
        if kind == "EmptyLatentImage":
            return {"width": int(arg("width")), "height": int(arg("height")), "frames": int(arg("batch_size"))}
        if kind == "LoadImage":
            with Image.open(self.input_dir / str(arg("image"))) as image:
                return (image.convert("RGB"), None)
        if kind == "WanImageToVideo":
            latent = {"width": int(arg("width")), "height": int(arg("height")), "frames": int(arg("length")),
                      "start": arg("start_image") if "start_image" in body["inputs"] else None}
            return (arg("positive"), arg("negative"), latent)
        if kind == "KSampler":
            steps = int(arg("steps"))
            for step in range(steps):
                progress(step + 1, steps)
            return {**arg("latent_image"), "seed": int(arg("seed")), "text": arg("positive")["text"]}
        if kind == "VAEEncode":
            pixels = arg("pixels")
            return {"width": pixels.width, "height": pixels.height, "frames": 1, "start": pixels}
        if kind == "VAEDecode":
            return _draw(arg("samples"))
        if kind in ("SaveImage", "PreviewImage"):
            prefix = str(body["inputs"].get("filename_prefix", "ComfyUI"))
            files = []
            for frame in arg("images"):
                subfolder, name = self._next_name(prefix, "png")
                frame.save(self.output_dir / subfolder / name)
                files.append(self._file(subfolder, name))
            return {"images": files}
        if kind == "CreateVideo":
            return {"frames": arg("images"), "fps": float(arg("fps"))}
        if kind == "SaveVideo":
            video = arg("video")
            subfolder, name = self._encode(video["frames"], video["fps"], str(arg("filename_prefix")))
            return {"images": [self._file(subfolder, name)], "animated": [True]}
        if kind == "VHS_VideoCombine":
            subfolder, name = self._encode(arg("images"), float(arg("frame_rate")), str(arg("filename_prefix")),
                                           "gif" if arg("format") == "image/gif" else "mp4")
            return {"gifs": [{**self._file(subfolder, name), "format": arg("format"),
                              "frame_rate": float(arg("frame_rate")),
                              "fullpath": str(self.output_dir / subfolder / name)}]}
        if kind == "SaveAnimatedWEBP":
            frames = arg("images")
            subfolder, name = self._next_name(str(arg("filename_prefix")), "webp")
            frames[0].save(self.output_dir / subfolder / name, save_all=True, append_images=frames[1:],
                           duration=round(1000 / float(arg("fps"))), lossless=True)
            return {"images": [self._file(subfolder, name)], "animated": [True]}
        raise NodeFailed(node, f"{kind} is not implemented by the stand-in", "NotImplementedError")

    def _next_name(self, prefix: str, extension: str) -> tuple[str, str]:
        """(subfolder, file name) for a filename_prefix such as "video/fanren", as folder_paths names them."""
        subfolder, _, stem = prefix.rpartition("/")
        (self.output_dir / subfolder).mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._counter += 1
            return subfolder, f"{stem}_{self._counter:05d}_.{extension}"

    def _file(self, subfolder: str, name: str) -> dict[str, str]:
        return {"filename": name, "subfolder": subfolder, "type": "output"}

    def _encode(self, frames: list[Image.Image], fps: float, prefix: str, extension: str = "mp4") -> tuple[str, str]:
        subfolder, name = self._next_name(prefix, extension)
        raw = b"".join(frame.tobytes() for frame in frames)
        width, height = frames[0].size
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
                        "-s", f"{width}x{height}", "-framerate", f"{fps:g}", "-i", "-",
                        *(["-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "ultrafast"] if extension == "mp4" else []),
                        str(self.output_dir / subfolder / name)],
                       input=raw, check=True, capture_output=True)
        return subfolder, name


async def _until_disconnect(websocket: WebSocket) -> None:
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass


class Interrupted(Exception):
    def __init__(self, node: str) -> None:
        super().__init__(node)
        self.node = node


class NodeFailed(Exception):
    def __init__(self, node: str, message: str, kind: str) -> None:
        super().__init__(message)
        self.node, self.message, self.kind = node, message, kind


def _order(prompt: dict[str, Any], outputs: set[str]) -> list[str]:
    """The nodes the outputs need, each after the nodes it reads from."""
    order: list[str] = []

    def visit(node: str) -> None:
        if node in order:
            return
        for value in prompt[node]["inputs"].values():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                visit(value[0])
        order.append(node)

    for node in sorted(outputs):
        visit(node)
    return order


def _draw(latent: dict[str, Any]) -> list[Image.Image]:
    width, height, seed = latent["width"], latent["height"], latent["seed"]
    start = latent.get("start")
    frames = []
    for n in range(latent["frames"]):
        frame = start.resize((width, height)) if start is not None else Image.new("RGB", (width, height),
                                                                                   seed_color(seed))
        draw = ImageDraw.Draw(frame)
        draw.text((8, 8), f"{latent['text'][:60]}\nseed {seed}", fill=(255, 255, 255))
        side = max(4, min(width, height) // 8)
        x = (n * 7) % max(1, width - side)
        draw.rectangle((x, height - side - 4, x + side, height - 4), fill=(255, 255, 255))
        frames.append(frame)
    return frames


def _has_sansio() -> bool:
    try:
        import uvicorn.protocols.websockets.websockets_sansio_impl  # noqa: F401
    except ImportError:
        return False
    return True

