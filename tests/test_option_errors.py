"""Bad engine options, every engine alike: exit code 2, one line naming drama.toml, the option's key
path under [profiles] and what it takes (the known options, with a did-you-mean), nothing touched.

The test_errors.py style, with whole messages: engines raise OptionError while they are built, the
compiler places it in drama.toml, and the CLI's one error handler prints it and picks the exit code.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import fanren
from test_errors import snapshot

from fanren.testing import TINY_KINDS

KNOWN_TINY = ", ".join(f"fanren-tiny:{kind}" for kind in TINY_KINDS)

FLUX_OPTIONS = ("attention, cache, compile, consistency, device, download, dtype, fuse_qkv, guidance, "
                "kontext_guidance, kontext_model, kontext_revision, kontext_steps, model, quantize, "
                "revision, steps, vram")


def with_profile(drama: Path, table: str) -> None:
    path = drama / "drama.toml"
    path.write_text(path.read_text(encoding="utf-8") + "\n" + table, encoding="utf-8")


def fails_with(drama: Path, profile: str, message: str) -> None:
    before = snapshot(drama)
    result = fanren("build", drama, "--profile", profile)
    assert (result.code, result.stderr) == (2, f"error: {drama / 'drama.toml'}: {message}\n")
    assert snapshot(drama) == before


def test_a_misspelt_diffusion_option_names_file_key_path_and_known_options(small_drama: Path) -> None:
    with_profile(small_drama, '[profiles.final]\nimage = { engine = "flux", stepz = 1 }\n')
    fails_with(small_drama, "final", "profiles.final.image.stepz: expected an option of engine 'flux' "
                                     f"(did you mean 'steps'? known options: {FLUX_OPTIONS})")


@pytest.mark.parametrize("table, message", [
    ('image = { engine = "flux", steps = 0 }',
     "profiles.final.image.steps: expected an integer in [1, 200], got 0"),
    ('image = { engine = "flux", attention = "fast" }',
     "profiles.final.image.attention: expected one of 'default', 'cudnn', 'flash', 'efficient', "
     "'flash-attn', 'flash-attn3', 'sage', got 'fast'"),
    ('image = { engine = "flux", model = "fanren-tiny:fluxx" }',
     "profiles.final.image.model: expected a known tiny model, got 'fanren-tiny:fluxx' (known: "
     f"{KNOWN_TINY})"),
    ('video = { engine = "cogvideox", frames = 50 }',
     "profiles.final.video.frames: expected a frame count CogVideoX-5b-I2V renders: 8k+1 "
     "(9, 17, 25, …, 49), got 50"),
    ('video = { engine = "svd", min_guidance = 2.0, max_guidance = 1.0 }',
     "profiles.final.video.max_guidance: expected at least min_guidance (2.0), got 1.0"),
    # voice engines are placed the same way
    ('voice = { engine = "cosyvoice", retrys = 3 }',
     "profiles.final.voice.retrys: expected an option of engine 'cosyvoice' (did you mean 'retries'? "
     "known options: backoff, mode, model, retries, sample_rate, timeout, url)"),
    ('voice = { engine = "openai", base_url = "localhost:8000" }',
     "profiles.final.voice.base_url: expected an http:// or https:// URL, got 'localhost:8000'"),
])
def test_a_bad_engine_option_value(small_drama: Path, table: str, message: str) -> None:
    with_profile(small_drama, f"[profiles.final]\n{table}\n")
    fails_with(small_drama, "final", message)


def test_a_video_model_that_cannot_render_the_aspect_names_the_model_option(small_drama: Path) -> None:
    path = small_drama / "drama.toml"
    path.write_text(path.read_text(encoding="utf-8").replace('aspect = "16:9"', 'aspect = "9:16"'),
                    encoding="utf-8")
    with_profile(small_drama, '[profiles.final]\nvideo = { engine = "cogvideox" }\n')  # final's own ltx2 renders 9:16
    fails_with(small_drama, "final",
               "profiles.final.video.model: expected a model that renders the drama's aspect 9:16, got "
               "'THUDM/CogVideoX-5b-I2V', which renders only 16:9 (720×480) (for 9:16 use model = "
               "\"THUDM/CogVideoX1.5-5B-I2V\" or the svd engine)")


def test_embedded_engines_refuse_unknown_options_too(small_drama: Path) -> None:
    text = (small_drama / "drama.toml").read_text(encoding="utf-8")
    (small_drama / "drama.toml").write_text(text.replace('video = { engine = "kenburns", seconds = 1.0 }',
                                                         'video = { engine = "kenburns", secondz = 1.0 }'),
                                            encoding="utf-8")
    fails_with(small_drama, "draft", "profiles.draft.video.secondz: expected an option of engine 'kenburns' "
                                     "(did you mean 'seconds'? known options: seconds)")


def test_an_embedded_engine_option_value_is_exit_2_not_a_failed_build(small_drama: Path) -> None:
    text = (small_drama / "drama.toml").read_text(encoding="utf-8")
    (small_drama / "drama.toml").write_text(text.replace("seconds = 1.0", "seconds = -1"), encoding="utf-8")
    fails_with(small_drama, "draft",
               "profiles.draft.video.seconds: expected a number of seconds in (0, 120], got -1")


def test_an_engine_that_takes_no_options_says_so(small_drama: Path) -> None:
    with_profile(small_drama, '[profiles.cards]\nimage = { engine = "card", size = 3 }\n')
    fails_with(small_drama, "cards", "profiles.cards.image.size: expected an option of engine 'card' "
                                     "(engine 'card' takes no options)")


def test_a_misspelt_engine_name(small_drama: Path) -> None:
    with_profile(small_drama, '[profiles.final]\nimage = { engine = "flx" }\n')
    fails_with(small_drama, "final",
               "profiles.final.image.engine: expected an installed engine, got 'flx' (did you mean 'flux'? "
               "installed: card, cogvideox, comfyui, consistency, cosyvoice, espeak, export, flux, flux2, hunyuanvideo15, "
               "kenburns, ltx2, mux, openai, storyboard, svd, wan)")
