"""Fixtures that build small real things: a drama folder, a `fanren` subprocess, its report."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# A small drama used by the end-to-end tests: two scenes, three shots, narration and dialogue.
SMALL_DRAMA = """\
[drama]
title = "试炼"
language = "zh"
aspect = "16:9"
fps = 12
style = "ink wash painting"
seed = 7

[narrator]
voice = "narrator"

[voices.narrator]
speed = 1.3

[voices.lin]
speed = 1.4

[characters.lin]
name = "林青"
description = "a young swordswoman in a blue robe"
voice = "lin"

[characters.elder]
name = "白长老"
description = "an old sect elder with a white beard"

[[scenes]]
id = "gate"
setting = "a mountain gate in the mist"

[[scenes.shots]]
id = "s1"
characters = ["lin"]
action = "Lin Qing climbs the stone steps"
camera = "wide shot"
narration = "山门在雾中。"

[[scenes.shots]]
id = "s2"
characters = ["lin", "elder"]
action = "The elder blocks her way"
narration = "长老拦住了她。"
lines = [{ who = "elder", text = "你为何而来？" }]

[[scenes]]
id = "hall"
setting = "a candle-lit hall"

[[scenes.shots]]
id = "s3"
characters = ["elder"]
action = "The elder nods"
narration = "他点了点头。"

[profiles.draft]
video = { engine = "kenburns", seconds = 1.0 }
"""


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


def fanren(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None,
           timeout: float = 600) -> Run:
    """Run the real `fanren` command line in a subprocess."""
    full_env = {k: v for k, v in os.environ.items() if k != "FANREN_CACHE_DIR"}
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "fanren", *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    return Run(proc.returncode, proc.stdout, proc.stderr)


def report(drama: Path, profile: str = "draft") -> dict:
    return json.loads((drama / "out" / profile / "report.json").read_text(encoding="utf-8"))


def ran(drama: Path, profile: str = "draft") -> set[str]:
    """The ids of the nodes the last build actually ran."""
    return {n["id"] for n in report(drama, profile)["nodes"] if n["status"] == "ran"}


def write_drama(folder: Path, text: str = SMALL_DRAMA) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "drama.toml").write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def built_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small drama, built once (cache and out/ included); copy it with `small_drama`."""
    folder = write_drama(tmp_path_factory.mktemp("built") / "drama")
    result = fanren("build", folder)
    assert result.code == 0, result.stderr
    return folder


@pytest.fixture
def small_drama(built_small: Path, tmp_path: Path) -> Path:
    """A fresh copy of the already-built small drama, so a test starts from a warm cache."""
    target = tmp_path / "drama"
    shutil.copytree(built_small, target, symlinks=True)
    return target


def install_engine(site: Path, name: str, source: str, engine_class: str) -> dict[str, str]:
    """A third-party engine: module `<name>_engine` (its `source`) in a package on PYTHONPATH with a
    `fanren.engines` entry point `name`; the environment that finds it."""
    site.mkdir(parents=True)
    module = f"{name}_engine"
    (site / f"{module}.py").write_text(source, encoding="utf-8")
    info = site / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}-engine\nVersion: 1.0\n",
                                   encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[fanren.engines]\n{name} = {module}:{engine_class}\n",
                                           encoding="utf-8")
    return {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
