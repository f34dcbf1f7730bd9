"""`fanren build --check`: cached nodes rendered again, their bytes compared."""

from __future__ import annotations

from pathlib import Path

from conftest import SMALL_DRAMA, fanren, install_engine, report, write_drama

# A third-party image engine, installed the way a package adds one (an entry point), that is not
# deterministic: every picture gets one pixel from os.urandom.
NOISY_ENGINE = '''
import os
from PIL import Image
from fanren.engines.image.card import CardEngine

class NoisyEngine(CardEngine):
    name = "noisy"

    def run(self, request):
        files = super().run(request)
        with Image.open(files["image.png"]) as image:
            image.load()
            image.putpixel((0, 0), tuple(os.urandom(3)))
            image.save(files["image.png"])
        return files
'''



def test_a_deterministic_build_checks_clean(small_drama: Path) -> None:
    result = fanren("build", small_drama, "--check")

    assert result.code == 0, result.stderr
    nodes = len(report(small_drama)["nodes"])
    assert f"checked {nodes} nodes: every one gave the same bytes again" in result.stdout
    assert result.stderr.count("check ") == nodes  # one progress line a node


def test_check_names_every_node_and_engine_that_gives_other_bytes(tmp_path: Path) -> None:
    env = install_engine(tmp_path / "site", "noisy", NOISY_ENGINE, "NoisyEngine")
    drama = write_drama(tmp_path / "drama", SMALL_DRAMA.replace(
        '[profiles.draft]\n', '[profiles.draft]\nimage = { engine = "noisy" }\n'))
    assert fanren("build", drama, env=env).code == 0
    lock = (drama / "drama.lock").read_text(encoding="utf-8")

    result = fanren("build", drama, "--check", env=env)

    assert result.code == 1
    assert "error: 5 of 18 node(s) gave other bytes than the cache holds" in result.stderr
    # the noisy images differ; everything downstream was rendered from the cached inputs, not the
    # new ones, and the Ken Burns clips and the mux nodes are deterministic: they are not named
    named = [line.strip() for line in result.stderr.splitlines() if line.startswith("  ")]
    assert sorted(line.split(" (")[0] for line in named) == [
        "character:elder", "character:lin", "keyframe:s1", "keyframe:s2", "keyframe:s3"]
    assert all(" (noisy): image.png (cached " in line for line in named)
    assert (drama / "drama.lock").read_text(encoding="utf-8") == lock  # --check commits nothing
