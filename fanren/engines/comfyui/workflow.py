"""A ComfyUI workflow in API format, and where fanren writes its inputs into it.

The API format is what ComfyUI's "Export (API)" saves and what POST /prompt takes: an object of node
id → {"class_type", "inputs", "_meta": {"title"}}. An input is either a value (a widget: a prompt's
text, a seed, a width) or a link ["<node id>", <output index>] to another node's output.

fanren fills a workflow's inputs by name — prompt, seed, width, height, image, frames, fps — found
two ways, the profile's table first:
- the profile names them: `inputs = { prompt = "6.inputs.text", seed = "3.inputs.seed" }`
  (a list names several places: `seed = ["3.inputs.seed", "12.inputs.noise_seed"]`);
- the workflow titles the node `fanren.<name>` (in ComfyUI: right click → Title): the node's input
  of that name, or the usual one for it (`text` for prompt, `noise_seed` for seed, `length` for
  frames, ...). A node titled `fanren.size` takes width and height.
The output is the node the profile names (`output = "9"`), else the node titled `fanren.output`,
else the workflow's only saving node (SaveImage, SaveVideo, VHS_VideoCombine, ...).

Everything here is checked before anything runs: a problem raises OptionError, which the compiler
shows at `profiles.<profile>.<family>.<option>` in drama.toml.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import OptionError

ENGINE = "comfyui"
TITLE_PREFIX = "fanren."
# What each of fanren's inputs is usually called in ComfyUI's nodes, first match wins.
INPUT_NAMES: dict[str, tuple[str, ...]] = {
    "prompt": ("text", "prompt", "positive_prompt"),
    "seed": ("seed", "noise_seed"),
    "width": ("width",),
    "height": ("height",),
    "image": ("image",),
    "frames": ("length", "frames", "num_frames", "frame_count", "batch_size"),
    "fps": ("fps", "frame_rate"),
}
IMAGE_INPUTS = frozenset({"prompt", "seed", "width", "height", "image"})
VIDEO_INPUTS = frozenset(INPUT_NAMES)
# Nodes that save what they made (ComfyUI keeps the outputs of these only).
SAVE_NODES = frozenset({"SaveImage", "PreviewImage", "SaveVideo", "SaveWEBM", "SaveAnimatedWEBP",
                        "SaveAnimatedPNG", "VHS_VideoCombine", "Image Save"})
API_FORMAT = 'ComfyUI\'s API format: an object of node id → {"class_type": ..., "inputs": {...}}'
API_HINT = ("in ComfyUI, open the workflow and use Workflow → Export (API); older versions show "
            "'Save (API Format)' once 'Enable Dev mode Options' is on in the settings")


@dataclass(frozen=True)
class Target:
    """One input of one node: where a value of fanren goes."""

    node: str
    input: str

    def __str__(self) -> str:
        return f"{self.node}.inputs.{self.input}"


@dataclass(frozen=True)
class Workflow:
    """A checked API-format workflow with the places its named inputs go and its output node."""

    nodes: Mapping[str, Any]
    targets: Mapping[str, tuple[Target, ...]]   # fanren input name → where it goes
    output: str                                 # the node whose files are the result

    def class_type(self, node: str) -> str:
        return str(self.nodes[node]["class_type"])

    def describe(self, node: str) -> str:
        return f"node {node} ({self.class_type(node)})"

    def filled(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of the workflow with each named input set to its value."""
        nodes = copy.deepcopy(dict(self.nodes))
        for name, value in values.items():
            for target in self.targets.get(name, ()):
                nodes[target.node]["inputs"][target.input] = value
        return nodes


def load_workflow(path: Path, inputs: object, output: object, names: frozenset[str]) -> Workflow:
    """Read and check the workflow at `path`; `inputs` and `output` are the profile's options."""
    nodes = read_api_format(path)
    targets = _titled_targets(nodes, names, path)
    if inputs is not None:
        if not isinstance(inputs, Mapping):
            raise OptionError(ENGINE, "inputs", f"a table of input name → \"<node id>.inputs.<input>\" "
                              f"(names: {', '.join(sorted(names))})", repr(inputs))
        for name in sorted(inputs):
            if name not in names:
                raise OptionError(ENGINE, f"inputs.{name}", f"one of {', '.join(sorted(names))}", repr(name))
            places = inputs[name] if isinstance(inputs[name], list) else [inputs[name]]
            targets[name] = tuple(_target(nodes, name, place) for place in places)
    if "prompt" not in targets:
        raise OptionError(ENGINE, "inputs", "the workflow's prompt input: inputs.prompt = \"<node id>.inputs.text\" "
                          "or a node titled fanren.prompt", "none", _node_listing(nodes))
    return Workflow(nodes=nodes, targets=targets, output=_output_node(nodes, output))


def read_api_format(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise OptionError(ENGINE, "workflow", "a workflow file (JSON in ComfyUI's API format)",
                          f"{path}, which does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise OptionError(ENGINE, "workflow", "a readable UTF-8 JSON file", f"{path}: {exc}") from None
    try:
        nodes = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OptionError(ENGINE, "workflow", "a JSON file in " + API_FORMAT,
                          f"{path}: invalid JSON at line {exc.lineno} column {exc.colno} ({exc.msg})") from None
    if isinstance(nodes, dict) and "nodes" in nodes and "links" in nodes:
        raise OptionError(ENGINE, "workflow", API_FORMAT,
                          f"{path}, a workflow in ComfyUI's UI format (it has \"nodes\" and \"links\")", API_HINT)
    if isinstance(nodes, dict) and isinstance(nodes.get("prompt"), dict):
        nodes = nodes["prompt"]  # the body of a POST /prompt, saved as is
    if not isinstance(nodes, dict) or not nodes:
        raise OptionError(ENGINE, "workflow", API_FORMAT, f"{path}: {type(nodes).__name__}", API_HINT)
    for node, body in nodes.items():
        if not isinstance(body, dict) or not isinstance(body.get("class_type"), str) \
                or not isinstance(body.get("inputs"), dict):
            raise OptionError(ENGINE, "workflow", API_FORMAT,
                              f"{path}: node {node!r} has no class_type and inputs", API_HINT)
    return nodes


def _target(nodes: Mapping[str, Any], name: str, place: object) -> Target:
    option = f"inputs.{name}"
    expected = "\"<node id>.inputs.<input name>\" of a node in the workflow"
    if not isinstance(place, str) or place.count(".inputs.") != 1:
        raise OptionError(ENGINE, option, expected, repr(place))
    node, _, input_name = place.partition(".inputs.")
    if node not in nodes:
        raise OptionError(ENGINE, option, expected, repr(place), f"the workflow has no node {node}; "
                          + _node_listing(nodes))
    return _checked(nodes, node, input_name, option, place)


def _checked(nodes: Mapping[str, Any], node: str, input_name: str, option: str, place: str) -> Target:
    body = nodes[node]
    known = body["inputs"]
    where = f"node {node} ({body['class_type']})"
    if input_name not in known:
        raise OptionError(ENGINE, option, "an input the node has", repr(place),
                          f"{where} has inputs: {', '.join(sorted(known)) or 'none'}")
    if _is_link(known[input_name]):
        source = known[input_name][0]
        raise OptionError(ENGINE, option, "an input that holds a value, not a link", repr(place),
                          f"{where} takes {input_name} from node {source} "
                          f"({nodes.get(source, {}).get('class_type', '?')}): name that node's input instead")
    return Target(node, input_name)


def _titled_targets(nodes: Mapping[str, Any], names: frozenset[str], path: Path) -> dict[str, tuple[Target, ...]]:
    found: dict[str, list[Target]] = {}
    for node in sorted(nodes, key=_node_order):
        title = str((nodes[node].get("_meta") or {}).get("title", ""))
        if not title.startswith(TITLE_PREFIX) or title == TITLE_PREFIX + "output":
            continue
        label = title[len(TITLE_PREFIX):]
        wanted = ["width", "height"] if label == "size" else [label]
        for name in wanted:
            if name in INPUT_NAMES and name not in names:
                continue  # a clip's input (frames, fps) in a workflow run for a picture: nothing to fill
            if name not in names:
                raise OptionError(ENGINE, "workflow", f"node titles fanren.<input> with inputs "
                                  f"{', '.join(sorted(names | {'size', 'output'}))}",
                                  f"{path}: node {node} is titled {title!r}")
            inputs = nodes[node]["inputs"]
            input_name = name if name in inputs else next(
                (candidate for candidate in INPUT_NAMES[name] if candidate in inputs), name)
            found.setdefault(name, []).append(_checked(nodes, node, input_name, "workflow", f"{path}: {title}"))
    return {name: tuple(places) for name, places in found.items()}


def _output_node(nodes: Mapping[str, Any], output: object) -> str:
    if output is not None:
        if not isinstance(output, (str, int)) or isinstance(output, bool) or str(output) not in nodes:
            raise OptionError(ENGINE, "output", "the id of the workflow's node whose files are the result",
                              repr(output), _node_listing(nodes))
        return str(output)
    titled = [n for n in nodes if (nodes[n].get("_meta") or {}).get("title") == TITLE_PREFIX + "output"]
    saving = [n for n in nodes if nodes[n]["class_type"] in SAVE_NODES]
    for candidates in (titled, saving):
        if len(candidates) == 1:
            return candidates[0]
    listing = ", ".join(f"{n} ({nodes[n]['class_type']})" for n in sorted(saving, key=_node_order))
    raise OptionError(ENGINE, "output", "the id of the workflow's node whose files are the result "
                      "(or a node titled fanren.output)", "none",
                      f"the workflow has {len(saving)} saving nodes" + (f": {listing}" if listing else ""))


def _node_listing(nodes: Mapping[str, Any]) -> str:
    shown = [f"{n} ({nodes[n]['class_type']})" for n in sorted(nodes, key=_node_order)]
    return "its nodes: " + ", ".join(shown[:20]) + (", ..." if len(shown) > 20 else "")


def _node_order(node: str) -> tuple[int, str]:
    return (int(node), "") if node.isdigit() else (1 << 62, node)


def _is_link(value: object) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)
