"""The consistency check end to end: `[check] consistency` in drama.toml, its nodes in a real draft
build, report.json, and `fanren build --check` failing on the shot that shows someone else."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import SMALL_DRAMA, fanren, install_engine, ran, report, write_drama

# An image engine installed the way a package adds one (an entry point): the draft's character
# cards as sheets, and keyframes that show each of the shot's characters exactly as their sheet,
# side by side, with the action written small under them -- except the one shot named by its
# option, where the image model drew something else entirely.
SHEETS_ENGINE = '''
from PIL import Image, ImageDraw
from fanren.engines.image.card import CardEngine

class SheetsEngine(CardEngine):
    name = "sheets"
    options_known = frozenset({"stranger"})

    def run(self, request):
        files = super().run(request)
        if request.kind != "keyframe":
            return files
        with Image.open(files["image.png"]) as card:
            width, height = card.size
        image = Image.new("RGB", (width, height), (250, 220, 0))
        draw = ImageDraw.Draw(image)
        if request.params["shot_id"] == self.options["stranger"]:
            for x in range(-height, width, 48):
                draw.polygon([(x, 0), (x + 24, 0), (x + 24 + height, height), (x + height, height)], fill=(0, 0, 0))
        else:
            sheets = request.inputs_of_kind("character")
            for i, (_, sheet) in enumerate(sheets):
                left, right = round(width * i / len(sheets)), round(width * (i + 1) / len(sheets))
                with Image.open(sheet["image.png"]) as picture:
                    image.paste(picture.convert("RGB").resize((right - left, height)), (left, 0))
        draw.text((8, height - 16), request.params["action"], fill=(255, 255, 255))
        image.save(files["image.png"])
        return files
'''

DRAMA = """\
[drama]
title = "Consistency"
language = "en"
aspect = "1:1"
fps = 12

[characters.lin]
name = "Lin"
description = "a young swordswoman in a blue robe"

[characters.elder]
name = "Elder Bai"
description = "an old sect elder with a white beard"

[check]
consistency = { model = "fanren-tiny:dinov2", device = "cpu", threshold = THRESHOLD, outlier_z = 1.5 }

[profiles.draft]
image = { engine = "sheets", stranger = "s4" }
video = { engine = "kenburns", seconds = 0.5 }

[[scenes]]
id = "gate"
setting = "a mountain gate in the mist"
characters = ["lin"]
SHOTS
[[scenes.shots]]
id = "s7"
characters = ["lin", "elder"]
action = "The elder blocks her way"

[[scenes.shots]]
id = "s8"
characters = ["elder"]
action = "The elder nods"
"""
ACTIONS = ["Lin climbs the steps", "Lin rests", "Lin looks up", "Lin draws her sword", "Lin bows", "Lin waits"]
SHOTS = "".join(f'\n[[scenes.shots]]\nid = "s{i}"\naction = "{a}"\nduration = 0.5\n'
                for i, a in enumerate(ACTIONS, start=1))



def drama_text(threshold: str, shots: str = SHOTS) -> str:
    return DRAMA.replace("THRESHOLD", threshold).replace("SHOTS", shots)


def test_the_shot_showing_someone_else_is_flagged_and_fails_check(tmp_path: Path) -> None:
    env = install_engine(tmp_path / "site", "sheets", SHEETS_ENGINE, "SheetsEngine")
    drama = write_drama(tmp_path / "drama", drama_text("-1.0"))

    first = fanren("build", drama, env=env)

    assert first.code == 0, first.stderr
    consistency = report(drama)["consistency"]
    assert set(consistency) == {"model", "threshold", "outlier_z", "characters", "flagged"}
    assert (consistency["model"], consistency["threshold"], consistency["outlier_z"]) == ("fanren-tiny:dinov2", -1.0, 1.5)
    lin, elder = consistency["characters"]["lin"], consistency["characters"]["elder"]
    assert list(consistency["characters"]) == ["lin", "elder"]
    assert [s["shot"] for s in lin["shots"]] == ["s1", "s2", "s3", "s4", "s5", "s6", "s7"]
    assert [s["shot"] for s in elder["shots"]] == ["s7", "s8"]
    assert [s["region"][1] for s in lin["shots"]] == [1, 1, 1, 1, 1, 1, 2]
    assert (lin["shots"][6]["region"], elder["shots"][0]["region"]) == ([0, 2], [1, 2])  # drawn lin, elder
    assert (lin["name"], elder["name"]) == ("Lin", "Elder Bai")
    stranger = lin["shots"][3]
    assert consistency["flagged"] == [{"character": "lin", "shot": "s4", "similarity": stranger["similarity"],
                                       "z": stranger["z"], "z_centroid": stranger["z_centroid"], "below": False,
                                       "outlier": True}]
    outlier = f"outlier (z {stranger['z']:+.2f} to the sheet, {stranger['z_centroid']:+.2f} to its other shots)"
    assert "consistency: 9 shot scores, 1 flagged (out/draft/report.json)" in first.stdout
    assert f"  s4: Lin (lin): {outlier}\n" in first.stderr

    # calibrate as docs/consistency.md says: a threshold between the stranger and the rest of the drama
    rest = min(s["similarity"] for c in (lin, elder) for s in c["shots"] if s is not stranger)
    threshold = round((stranger["similarity"] + rest) / 2, 4)
    (drama / "drama.toml").write_text(drama_text(str(threshold)), encoding="utf-8")

    checked = fanren("build", drama, "--check", env=env)

    assert checked.code == 1
    assert ran(drama) == set()  # a new threshold re-embeds nothing
    assert checked.stderr.endswith(
        f"error: 1 shot(s) fell below the consistency threshold {threshold:g} ([check] consistency in "
        "drama.toml; scores in out/<profile>/report.json)\n"
        f"  s4: Lin (lin): similarity {stranger['similarity']:.3f} < threshold {threshold:g}, {outlier}\n")
    nodes = len(report(drama)["nodes"])
    assert f"checked {nodes} nodes: every one gave the same bytes again" in checked.stdout

    # `fanren check`: the same verdict from the cache, rendering nothing
    alone = fanren("check", drama, "--json", env=env)
    assert alone.code == 1
    assert json.loads(alone.stdout) == report(drama)["consistency"]
    assert alone.stderr == checked.stderr[checked.stderr.index("error: "):]
    table = fanren("check", drama, env=env)
    assert table.code == 1
    assert table.stdout == (
        f"fanren-tiny:dinov2, threshold {threshold:g}, outliers at z ≤ -1.5\n"
        f"  Lin (lin): 7 shots, similarity to the sheet mean {lin['mean_similarity']:.3f}, lowest "
        f"{stranger['similarity']:.3f} (s4), between shots {lin['mean_pairwise']:.3f}\n"
        f"  Elder Bai (elder): 2 shots, similarity to the sheet mean {elder['mean_similarity']:.3f}, lowest "
        f"{min(s['similarity'] for s in elder['shots']):.3f} "
        f"({min(elder['shots'], key=lambda s: s['similarity'])['shot']}), between shots "
        f"{elder['mean_pairwise']:.3f}\n")

    # a changed keyframe re-scores only the characters it shows
    edited = SHOTS.replace("Lin rests", "Lin rests by the gate")
    (drama / "drama.toml").write_text(drama_text(str(threshold), edited), encoding="utf-8")

    again = fanren("build", drama, env=env)

    assert again.code == 0, again.stderr
    assert {n for n in ran(drama) if not n.endswith(":s2")} == {"consistency:lin", "storyboard", "episode"}
    assert json.loads((drama / "out" / "draft" / "report.json").read_text(encoding="utf-8"))[
        "consistency"]["characters"]["elder"] == elder


def test_checking_the_draft_cards_adds_one_node_per_character_and_renders_nothing_else(small_drama: Path) -> None:
    drama_toml = small_drama / "drama.toml"
    drama_toml.write_text(drama_toml.read_text(encoding="utf-8") + '\n[check]\nconsistency = '
                          '{ model = "fanren-tiny:clip-vision", device = "cpu", threshold = -1.0 }\n',
                          encoding="utf-8")

    result = fanren("build", small_drama)

    assert result.code == 0, result.stderr
    assert ran(small_drama) == {"consistency:lin", "consistency:elder"}
    consistency = report(small_drama)["consistency"]
    assert consistency["flagged"] == []
    shots = {cid: [(s["shot"], s["region"][1]) for s in c["shots"]]
             for cid, c in consistency["characters"].items()}
    # 16:9: one character's best of three squares across the frame; two characters' two columns
    assert shots == {"lin": [("s1", 3), ("s2", 2)], "elder": [("s2", 2), ("s3", 3)]}
    assert all(-1.0 <= s["similarity"] <= 1.0 for c in consistency["characters"].values() for s in c["shots"])
    assert "consistency: 4 shot scores, 0 flagged (out/draft/report.json)" in result.stdout


def test_check_says_what_is_missing(tmp_path: Path) -> None:
    env = install_engine(tmp_path / "site", "sheets", SHEETS_ENGINE, "SheetsEngine")
    without = [line for line in drama_text("0.5").splitlines() if not line.startswith(("[check]", "consistency"))]
    plain = write_drama(tmp_path / "plain", "\n".join(without) + "\n")
    plain_toml = plain / "drama.toml"
    unbuilt = write_drama(tmp_path / "unbuilt", drama_text("0.5"))

    result = fanren("check", plain, env=env)
    assert (result.code, result.stderr) == (
        2, (f"error: {plain_toml} sets no [check] consistency (see docs/consistency.md), so there is nothing "
            "to check\n"))
    result = fanren("check", unbuilt, env=env)
    assert (result.code, result.stderr) == (
        2, ("error: not scored yet for profile 'draft': consistency:lin, consistency:elder; run "
            "`fanren build --profile draft` first\n"))


def test_check_help_has_examples() -> None:
    result = fanren("check", "--help")
    assert result.code == 0, result.stderr
    assert "  Examples:\n    fanren check examples/xianxia\n" in result.stdout


def test_watch_starts_and_stops_checking_when_check_is_added_and_removed(small_drama: Path) -> None:
    from test_watch import edit, statuses, wait_outcomes, watching

    check = '\n[check]\nconsistency = { model = "fanren-tiny:dinov2", device = "cpu" }\n'
    tail = '[profiles.draft]\nvideo = { engine = "kenburns", seconds = 1.0 }\n'
    with watching(small_drama) as session:
        edit(small_drama, tail, tail + check)
        added = wait_outcomes(session, 2)[1]
        assert statuses(added, "ran") == {"consistency:lin", "consistency:elder"}
        assert session.engines is not None and session.engines.check is not None

        edit(small_drama, check, "\n")
        removed = wait_outcomes(session, 3)[2]
        assert statuses(removed, "ran") == set()
        assert session.engines.check is None
        assert "consistency" not in report(small_drama)


def test_a_served_job_checks_consistency_too(tmp_path: Path) -> None:
    from serve_helpers import Server, drama_archive, wait_for

    text = SMALL_DRAMA + '\n[check]\nconsistency = { model = "fanren-tiny:dinov2", device = "cpu" }\n'
    server = Server(tmp_path / "data", "draft").start()
    try:
        with server.client(server.key("checker")) as client:
            archive = drama_archive({"drama/drama.toml": text})
            response = client.post("/api/v1/jobs", files={"archive": ("drama.tgz", archive, "application/gzip")})
            assert response.status_code == 202, response.text
            job = wait_for(client, response.json()["id"])
    finally:
        server.stop()

    assert job["status"] == "completed", job
    assert {n["id"]: n["status"] for n in job["nodes"] if n["kind"] == "consistency"} == {
        "consistency:lin": "ran", "consistency:elder": "ran"}
    assert list(job["report"]["consistency"]["characters"]) == ["lin", "elder"]
