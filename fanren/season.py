"""The season of a series: out/<profile>/season.json and the page out/<profile>/index.html.

Written by every build of a series, from the plan of the whole series (a build of some episodes
plans them all), so the page says what is stale in the episodes the build did not run too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import Any

from .cache import Cache, atomic_write
from .plan import Decision
from .run import CACHED, RAN, NodeResult
from .series import Series

SEASON_FILE = "season.json"
SEASON_PAGE = "index.html"


def season_dict(series: Series, decisions: list[Decision], results: Mapping[str, NodeResult],
                cache: Cache, previous: Mapping[str, Any]) -> dict[str, Any]:
    """Every episode of the series with its title, shots, seconds and the nodes still stale.

    A node is up to date when this build ran or found it, or when the plan found it fresh and the
    build did not touch it. An episode's seconds are its shots' (timing.json), read again only when
    its episode node's key changed since `previous` (the last season.json).
    """
    known = {e["id"]: e for e in previous.get("episodes", []) if isinstance(e, dict) and "id" in e}
    records: dict[str, Any] = {}
    stale: dict[str | None, list[str]] = {}
    for decision in decisions:
        node_id = decision.node.id
        result = results.get(node_id)
        record = result.record if result is not None else decision.record
        if result is not None and result.status in (RAN, CACHED) or result is None and not decision.stale:
            records[node_id] = record
        else:
            stale.setdefault(series.episode_of(node_id), []).append(node_id)
    episodes = []
    for eid, project in series.episodes.items():
        episode = records.get(f"{eid}/episode")
        key = episode.key if episode is not None else None
        seconds = None
        if key is not None:
            before = known.get(eid, {})
            seconds = before.get("seconds") if before.get("key") == key else _seconds(
                [records.get(f"{eid}/shot:{shot.id}") for _, shot in project.shots()], cache)
        episodes.append({
            "id": eid, "title": project.drama.title, "shots": len(project.shots()), "key": key,
            "seconds": seconds, "stale": sorted(stale.get(eid, [])),
            "episode": f"{eid}/episode.mp4", "storyboard": f"{eid}/storyboard.html",
        })
    return {"title": series.shared.drama.title, "episodes": episodes,
            "shared_stale": sorted(stale.get(None, [])),
            "seconds": round(sum(e["seconds"] or 0 for e in episodes), 3)}


def _seconds(shots: list[Any], cache: Cache) -> float | None:
    total = 0.0
    for record in shots:
        if record is None:
            return None
        try:
            timing = json.loads(cache.object_for_use(record, "timing.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        total += float(timing["duration"])
    return round(total, 3)


def write_season(out_dir: Path, series: Series, decisions: list[Decision],
                 results: Mapping[str, NodeResult], cache: Cache) -> dict[str, Any]:
    """season.json and index.html under out/<profile>/ (not fsynced: the next build rewrites them)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        previous = json.loads((out_dir / SEASON_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        previous = {}
    season = season_dict(series, decisions, results, cache, previous if isinstance(previous, dict) else {})
    season["profile"] = out_dir.name
    atomic_write(out_dir / SEASON_FILE, json.dumps(season, ensure_ascii=False, indent=1) + "\n", durable=False)
    atomic_write(out_dir / SEASON_PAGE, season_page(season), durable=False)
    return season


def season_page(season: Mapping[str, Any]) -> str:
    """A plain page: one row per episode, its storyboard and video linked, its length, what is stale."""
    rows = []
    for e in season["episodes"]:
        seconds = e["seconds"]
        length = f"{int(seconds // 60)}:{seconds % 60:04.1f}" if seconds is not None else "—"
        stale = (f'<td class="stale">{len(e["stale"])} stale: {escape(", ".join(e["stale"][:5]))}'
                 f'{" …" if len(e["stale"]) > 5 else ""}</td>' if e["stale"] else '<td class="ok">up to date</td>')
        rows.append(f'<tr><td><a href="{escape(e["storyboard"])}">{escape(e["id"])}</a></td>'
                    f'<td>{escape(e["title"])}</td><td>{e["shots"]}</td><td>{length}</td>{stale}'
                    f'<td><a href="{escape(e["episode"])}">episode.mp4</a></td></tr>')
    shared = season["shared_stale"]
    note = (f'<p class="stale">shared sheets stale: {escape(", ".join(shared))}</p>' if shared else "")
    title = escape(season["title"])
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{title} — season</title>
<style>
body {{ font-family: system-ui, "Noto Sans CJK SC", sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }} td, th {{ padding: .3em .8em; border-bottom: 1px solid #ddd; text-align: left; }}
.stale {{ color: #a40; }} .ok {{ color: #070; }}
</style></head><body>
<h1>{title}</h1>
<p>profile {escape(str(season.get("profile", "")))}: {len(season["episodes"])} episodes, {season["seconds"]:.1f} s in all</p>
{note}<table><tr><th>episode</th><th>title</th><th>shots</th><th>length</th><th>status</th><th></th></tr>
{chr(10).join(rows)}
</table></body></html>
"""
