"""`fanren init`: a new drama folder with a drama.toml that shows every key and builds as it is.

The template is a two-shot story that validates and renders with the draft profile, so the first
`fanren build` after `fanren init` succeeds; every optional key is present but commented out,
with its default, so the file doubles as a reference card.
"""

from __future__ import annotations

import json
from pathlib import Path
from string import Template

from .errors import UsageError
from .project import DRAMA_FILE

# `$title` is the only substitution; a TOML basic string, quoted and escaped by scaffold().
DRAMA_TEMPLATE = Template("""\
# drama.toml: the whole story of one episode. `fanren build` renders it into out/draft/episode.mp4.
# Every key is shown. The commented-out ones are optional: uncomment one to use it (in [drama]
# and [voices] the commented values are the defaults).
# Reference: docs/drama-toml.md in the fanren repository.
#
# Text a viewer hears or reads (narration, lines, names) is in the drama's language; text only the
# image and video models read (style, description, setting, action, camera) works best in English.

[drama]
title = $title
language = "zh"              # "zh" or "en"
aspect = "16:9"              # "16:9" (1280×720), "9:16" (720×1280) or "1:1" (960×960)
# fps = 24                   # frames per second of the episode, 1 to 120
style = "watercolor storybook illustration, soft morning light, gentle pastel colors"
seed = 1                     # every character and shot seed is derived from it and their id
# pause = 0.4                # seconds of silence after a shot's last line, before the next shot
# subtitles = "burn"         # "burn" into the picture, "soft" (a subtitle track) or "none"
# fit = "slow"               # speech longer than the clip: "slow" the clip, "hold" its last frame, "loop" it
# motion = "interpolate"     # a clip below the episode's fps: "interpolate" its motion or "duplicate" frames

# Who reads `narration` and every line with who = "narrator". Without it, the voice engine's
# default voice for the language reads them.
[narrator]
voice = "narrator"

# A voice: `speed`, and for each voice engine (named by the key) the voice it should use.
# Leave an engine out to get its default voice for the language.
[voices.narrator]
# espeak = "cmn-latn-pinyin"   # the draft profile's engine (espeak-ng voice name)
cosyvoice = "中文男"           # the final profile's engine (CosyVoice speaker)
# speed = 1.0                  # greater than 0.25, at most 4.0

[voices.xiaoman]
cosyvoice = "中文女"
speed = 1.05

# A character; the table name (`xiaoman`) is the id that scenes, shots and lines use.
[characters.xiaoman]
name = "小满"                  # shown to the viewer; the id when left out
description = "a cheerful ten-year-old herb-gatherer girl with a straw hat, a green cotton tunic and a bamboo basket on her back"
voice = "xiaoman"              # a [voices.*] id; the engine's default voice when left out
# reference = "refs/xiaoman.png"   # a picture of her, inside this folder
# aliases = ["小药童"]           # other names the novel calls her by (fanren split reads them)

# A look: her whole appearance in one part of the story; a scene or shot picks it with `looks`.
# [characters.xiaoman.looks.grown]
# description = "a tall eighteen-year-old herbalist in a plain blue robe, a jade hairpin"
# reference = "refs/xiaoman.png"     # this look's picture; the character's when left out

# A scene is a place; its shots play in the order written.
[[scenes]]
id = "stream"                  # letters, digits, '_', '-' or '.', used once in the drama
setting = "a clear mountain stream at the foot of a green hill at dawn, mist over the water, smooth pebbles"
characters = ["xiaoman"]       # drawn in every shot of the scene that lists no characters of its own
# music = { file = "music/theme.mp3", volume = 0.1 }  # this scene's own music (see [music]), or "none"
# looks = { xiaoman = "grown" }  # the look each character has in every shot of the scene

[[scenes.shots]]
id = "pebble"                  # unique in the drama; its seed is derived from it, not its position
# characters = ["xiaoman"]     # who is drawn in this shot; the scene's list when left out
action = "the girl crouches in the shallow stream and lifts a small pebble that glows with a soft golden light"
camera = "slow push-in from a medium shot to her cupped hands"
narration = "山脚下的药童小满，在溪水里捡到一块会发光的石头。"
# seed = 1234                  # pins this shot's keyframe and clip to a seed of your choice
# duration = 4.0               # the shot lasts at least this many seconds
# fit = "hold"                 # this shot's own [drama] fit
# motion = "duplicate"         # this shot's own [drama] motion
# looks = { xiaoman = "grown" } # this shot's looks, over the scene's

[[scenes.shots]]
id = "whisper"
action = "the girl stares wide-eyed at the glowing pebble in her palm, its light pulsing like a heartbeat"
camera = "close-up on her face, golden light from below"
narration = "石头在她掌心里，轻轻跳了一下。"

# Spoken after the narration, in the order written.
[[scenes.shots.lines]]
who = "xiaoman"                # a character id, or "narrator"
text = "你刚才，是不是说话了？"

# Background music under the whole episode:
# [music]
# file = "music/theme.mp3"     # inside this folder
# volume = 0.25                # 0 to 1

# Profiles choose the engine of each family; `draft` (card + kenburns + espeak) is the default and
# `final` (flux2 + ltx2 + cosyvoice, every aspect) needs a GPU. A table here changes one or adds one:
# [profiles.final]
# image = "flux2"
# video = { engine = "ltx2" }   # an engine name, or a table of the engine and its options
# voice = "cosyvoice"

# A cache shared by a team or CI (docs/cache.md); credentials come from the environment only:
# [cache]
# remote = "s3://my-bucket/fanren"   # or "file:///mnt/team/fanren-cache"

# Editor timelines beside the episode, in out/<profile>/ (docs/export.md; pip install 'fanren[export]'):
# [export]
# formats = ["otio", "fcpxml", "jianying"]   # OpenTimelineIO, FCP 7 XML (Premiere, Resolve), a 剪映 draft
# Score how alike each character looks across its shots (docs/consistency.md; fanren[check]):
# [check.consistency]
# model = "facebook/dinov2-small"   # or "openai/clip-vit-large-patch14", or a folder
# revision = "main"
# device = "auto"                   # auto | cpu | cuda
# threshold = 0.6                   # `fanren build --check` fails for a shot below it
# outlier_z = 2.0                   # flag a shot this many standard deviations below the others
""")

GITIGNORE = """\
.fanren-cache/
out/
"""


def scaffold(root: Path, title: str | None = None) -> list[Path]:
    """Create a drama folder at `root`: drama.toml, .gitignore and refs/. Returns the paths written.

    An existing .gitignore is kept and only gains the lines it lacks.
    """
    root = Path(root)
    drama_file = root / DRAMA_FILE
    if drama_file.exists():
        raise UsageError(f"{drama_file} already exists; `fanren init` does not overwrite a drama")
    root.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    drama_file.write_text(drama_toml(title or root.resolve().name or "untitled"), encoding="utf-8")
    written.append(drama_file)

    gitignore = root / ".gitignore"
    if _extend_gitignore(gitignore):
        written.append(gitignore)

    refs = root / "refs"
    refs.mkdir(exist_ok=True)
    if not any(refs.iterdir()):
        # git keeps no empty folders
        keep = refs / ".gitkeep"
        keep.write_bytes(b"")
        written.append(keep)
    return written


def drama_toml(title: str) -> str:
    """The template with `title` as a TOML basic string.

    JSON's string escapes are all valid TOML; JSON leaves DEL (U+007F) raw, which TOML forbids.
    """
    quoted = json.dumps(title, ensure_ascii=False).replace("\x7f", "\\u007f")
    return DRAMA_TEMPLATE.substitute(title=quoted)


def _extend_gitignore(path: Path) -> bool:
    existing = path.read_text(encoding="utf-8") if path.exists() else ""
    present = {line.strip() for line in existing.splitlines()}
    missing = [line for line in GITIGNORE.splitlines() if line not in present]
    if not missing:
        return False
    separator = "" if not existing or existing.endswith("\n") else "\n"
    path.write_text(existing + separator + "\n".join(missing) + "\n", encoding="utf-8")
    return True
