#!/usr/bin/env python3
"""Series benchmark: a generated series in draft — cold build, no-op build, status, one shared
character edit, one narration edit in one episode.

    .venv/bin/python bench/series_bench.py                          # 60 episodes x 30 shots (docs/performance.md)
    .venv/bin/python bench/series_bench.py --episodes 6 --shots 10  # a quick look
    .venv/bin/python bench/series_bench.py --keep /tmp/s --reuse    # again on a built series, no cold build
    .venv/bin/python bench/series_bench.py --same-episodes --keep /tmp/s  # 60 x 30 no-op after one episode's cold build

The series: five main characters (one with a look, worn from the middle of the season on) and a
guest who appears in one shot of every twelfth episode; scenes of ten shots, narration on every
shot. Clips are short (0.5 s Ken Burns at 6 fps) and subtitles soft, so the cold build measures the
build system more than x264. Every timing is the wall clock of the real `fanren` subprocess
(interpreter start included) with its CPU seconds beside it and the 1-minute load average.

The shared-character edit changes the guest's description in series.toml: the nodes that run must
be exactly the guest's sheet, the keyframe, clip and shot of every shot that shows the guest, and
the episode and storyboard of those episodes (their subtitles are re-checked and found unchanged:
early cutoff). Both sets are printed; the script exits 1 when they differ.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_bench import CPU, SENTENCES, fanren, load, noop_checks  # noqa: E402

CAST = ("a", "b", "c", "d", "e")
GUEST_EVERY = 12   # the guest appears in one shot of every twelfth episode
GUEST_SHOT = 7     # ... the eighth shot


def make_series(root: Path, episodes: int, shots: int) -> set[str]:
    """Write the series; return the ids of the shots (`<episode>/<shot>`) that show the guest."""
    root.mkdir(parents=True, exist_ok=True)
    lines = ['[drama]\ntitle = "bench"\nlanguage = "zh"\nfps = 6\nstyle = "ink wash"\nseed = 1\nsubtitles = "soft"\n',
             '[voices.n]\nspeed = 1.6\n\n[narrator]\nvoice = "n"\n']
    for cid in CAST:
        lines.append(f'[characters.{cid}]\nname = "{cid.upper()}"\ndescription = "character {cid}"\n')
    lines.append('[characters.a.looks.old]\ndescription = "character a, thirty years on"\n')
    lines.append('[characters.guest]\nname = "G"\ndescription = "a wandering guest"\n')
    lines.append('[profiles.draft]\nvideo = { engine = "kenburns", seconds = 0.5 }\n')
    (root / "series.toml").write_text("\n".join(lines), encoding="utf-8")
    guest: set[str] = set()
    for e in range(episodes):
        eid = f"ep{e + 1:02d}"
        text = [f'[drama]\ntitle = "第{e + 1}集"\n']
        for s in range(shots):
            if s % 10 == 0:
                looks = ' \nlooks = { a = "old" }' if e >= episodes // 2 else ""
                text.append(f'[[scenes]]\nid = "scene{s // 10}"\nsetting = "place {e}.{s // 10}"{looks}\n')
            who = "guest" if e % GUEST_EVERY == 0 and s == GUEST_SHOT else CAST[(e + s) % len(CAST)]
            if who == "guest":
                guest.add(f"{eid}/s{s:02d}")
            text.append(f'[[scenes.shots]]\nid = "s{s:02d}"\ncharacters = ["{who}"]\naction = "action {e}.{s}"\n'
                        f'narration = "{SENTENCES[(e + s) % len(SENTENCES)]}"\n')
        (root / eid).mkdir(exist_ok=True)
        (root / eid / "drama.toml").write_text("\n".join(text), encoding="utf-8")
    return guest


def ran(root: Path) -> set[str]:
    report = json.loads((root / "out" / "draft" / "report.json").read_text(encoding="utf-8"))
    return {n["id"] for n in report["nodes"] if n["status"] == "ran"}


def edit(file: Path, old: str, new: str) -> None:
    text = file.read_text(encoding="utf-8")
    assert old in text, old
    file.write_text(text.replace(old, new, 1), encoding="utf-8")


def run(episodes: int, shots: int, repeats: int, root: Path, reuse: bool,
        same: bool = False) -> dict[str, object]:
    if not (reuse and (root / "series.toml").exists()):
        shutil.rmtree(root, ignore_errors=True)
    guest = make_series(root, episodes, shots)
    if same:
        return run_same(episodes, shots, repeats, root)
    load_before = load()
    built = build_and_noop(root, episodes, shots, repeats)

    edit(root / "series.toml", "a wandering guest", "a wandering guest in a straw cloak")
    character = fanren("build", str(root), "-q")
    character_cpu = CPU[-1]
    character_ran = ran(root)
    expected = {"character:guest"} | {f"{shot.split('/')[0]}/{kind}:{shot.split('/')[1]}"
                                      for shot in guest for kind in ("keyframe", "clip", "shot")} \
        | {f"{shot.split('/')[0]}/{node}" for shot in guest for node in ("episode", "storyboard")}

    episode = f"ep{episodes // 2:02d}"
    sentence = SENTENCES[(episodes // 2 - 1) % len(SENTENCES)]
    edit(root / episode / "drama.toml", f'narration = "{sentence}"', 'narration = "一句新的旁白。"')
    narration = fanren("build", str(root), "-q")
    narration_cpu = CPU[-1]
    return {
        **built, "load_1min": [load_before, load()],
        "character_edit_s": round(character, 2), "character_edit_cpu_s": round(character_cpu, 2),
        "guest_shots": sorted(guest),
        "character_edit_ran": len(character_ran), "character_edit_expected": len(expected),
        "character_edit_exact": character_ran == expected,
        "character_edit_unexpected": sorted(character_ran - expected),
        "character_edit_missing": sorted(expected - character_ran),
        "narration_edit_s": round(narration, 2), "narration_edit_cpu_s": round(narration_cpu, 2),
        "narration_edit_ran": sorted(ran(root)),
    }


def run_same(episodes: int, shots: int, repeats: int, root: Path) -> dict[str, object]:
    """--same-episodes: every episode is the first one, so each key renders once (one episode's cold
    build) while a no-op plans, checks and reports every node of the whole series; no edits."""
    first = (root / "ep01" / "drama.toml").read_text(encoding="utf-8")
    for e in range(1, episodes):
        (root / f"ep{e + 1:02d}" / "drama.toml").write_text(first, encoding="utf-8")
    load_before = load()
    built = build_and_noop(root, episodes, shots, repeats)
    return {**built, "same_episodes": True, "load_1min": [load_before, load()]}


def build_and_noop(root: Path, episodes: int, shots: int, repeats: int) -> dict[str, object]:
    """The cold build of the series in `root`, then `repeats` no-op builds and statuses."""
    cold = fanren("build", str(root), "-q", "-j", "2")
    cold_cpu = CPU[-1]
    nodes = len(json.loads((root / "out" / "draft" / "report.json").read_text(encoding="utf-8"))["nodes"])
    fanren("build", str(root), "-q")  # the first no-op writes the index of resolved keys
    noop = [fanren("build", str(root), "-q") for _ in range(repeats)]
    noop_cpu = CPU[-repeats:]
    status = [fanren("status", str(root)) for _ in range(repeats)]
    status_cpu = CPU[-repeats:]
    return {
        "episodes": episodes, "shots_per_episode": shots, "shots": episodes * shots, "nodes": nodes,
        "cold_build_s": round(cold, 1), "cold_build_cpu_s": round(cold_cpu, 1),
        "noop_build_s_median": round(statistics.median(noop), 3), "noop_build_s_min": round(min(noop), 3),
        "noop_build_cpu_s_median": round(statistics.median(noop_cpu), 3),
        "status_s_median": round(statistics.median(status), 3),
        "status_cpu_s_median": round(statistics.median(status_cpu), 3),
        **noop_checks(root),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=60)
    parser.add_argument("--shots", type=int, default=30, help="shots per episode")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="build here and keep the series (default: a temp dir)")
    parser.add_argument("--reuse", action="store_true",
                        help="with --keep: rebuild the series already there (its `cold` build runs only "
                             "what is stale)")
    parser.add_argument("--same-episodes", action="store_true",
                        help="every episode a copy of the first: each key renders once, so a no-op of "
                             "60 x 30 shots is measured after one episode's cold build; no edits")
    args = parser.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="fanren-series-bench-"))
    try:
        result = run(args.episodes, args.shots, args.repeats, workdir / "series", args.reuse, args.same_episodes)
        print(json.dumps(result, ensure_ascii=False), flush=True)
        sys.exit(0 if result.get("character_edit_exact", True) else 1)
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
