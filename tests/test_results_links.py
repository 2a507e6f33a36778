"""Links into the benchmark results resolve: README.md, benchmarks/RESULTS.md and benchmarks/results/history.md link
only to files that exist and to headings (GitHub anchors) that exist, and every result file transcribed from the
history points at a section that exists. Run alone: ``.venv/bin/python -m pytest -q tests/test_results_links.py``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict, List, Set

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", "benchmarks/RESULTS.md", "benchmarks/results/history.md"]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: markup dropped, lower case, punctuation except '-' and '_' removed, spaces -> '-'."""
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"(\*\*|__)(.+?)\1", r"\2", text)
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> Set[str]:
    """Every heading anchor of a markdown file (repeated headings get -1, -2, ... as on GitHub); code blocks skipped."""
    seen: Dict[str, int] = {}
    out: Set[str] = set()
    fenced = False
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        m = None if fenced else re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(page: Path) -> List[str]:
    bad = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):  # http(s):, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        if not dest.exists():
            bad.append(f"{target}: no file {dest}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    return bad


def test_slug_matches_github_anchors():
    assert slug("Scorer throughput (`compact_lrm`, in-process `score_batch`, CPU, 1 thread)") == \
        "scorer-throughput-compact_lrm-in-process-score_batch-cpu-1-thread"
    assert slug("Session 15: PushCube -- LRM / env dense 1.87 greedy") == "session-15-pushcube----lrm--env-dense-187-greedy"


@pytest.mark.parametrize("page", PAGES)
def test_links_resolve(page):
    path = ROOT / page
    assert path.exists(), page
    assert broken_links(path) == []


def test_transcribed_result_files_name_their_source_and_a_section_that_exists():
    history = ROOT / "benchmarks/results/history.md"
    files = [p for p in sorted((ROOT / "benchmarks/results").glob("*.json"))
             if "history_section" in json.loads(p.read_text())]
    assert files, "no result files transcribed from the history"
    for p in files:
        r = json.loads(p.read_text())
        assert r["source"].startswith("transcribed from RESULTS.md history"), p.name
        assert r["topic"] == p.stem and r["values"] and r["command"] and r["date"] and r["commit"], p.name
        file_part, _, anchor = r["history_section"].partition("#")
        assert file_part == "benchmarks/results/history.md" and anchor in anchors(history), (p.name, anchor)
