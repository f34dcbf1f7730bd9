"""The live page's markup, style and script are package files, shipped as package data."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from importlib import resources

from conftest import REPO

from fanren.live import PAGE


def test_the_page_is_assembled_from_the_package_files() -> None:
    static = resources.files("fanren") / "static"
    names = sorted(item.name for item in static.iterdir())
    assert names == ["live.css", "live.html", "live.js"]
    html = (static / "live.html").read_text(encoding="utf-8")
    assert PAGE.startswith(html[:html.index("/*STORYBOARD_STYLE*/")])
    for name in ("live.css", "live.js"):
        assert (static / name).read_text(encoding="utf-8") in PAGE


def test_every_static_file_is_package_data() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["fanren"]
    for file in (REPO / "fanren" / "static").iterdir():
        assert any(fnmatch(f"static/{file.name}", pattern) for pattern in patterns), file.name
