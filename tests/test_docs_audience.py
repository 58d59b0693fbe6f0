"""docs/ and the README speak to users: no word of how the project is developed (issue numbers, the team, a
developer's sketch) and no path of the machine they were written on."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# (pattern, what it is). Upstream references (opencv/opencv#29931) name another project's tracker: allowed.
FORBIDDEN = [
    (r"\b(?:issue|ticket|PR)\s*#?\d+", "an issue number of this project"),
    (r"(?<![\w/])shared/", "the developers' shared folder"),
    (r"/work/|/root/|/home/\w+", "a path of the machine the docs were written on"),
    (r"\bthe team\b|\bour team\b|\bsketch\b", "the developers' process"),
    (r"\b(?:session|engineer|the lead)s? (?:of|on) (?:this|the) (?:project|task)\b", "the developers' process"),
]


def findings(text: str) -> list[str]:
    return [f"line {text.count(chr(10), 0, m.start()) + 1}: {m.group()!r} ({why})"
            for pattern, why in FORBIDDEN for m in re.finditer(pattern, text, re.IGNORECASE)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_the_page_speaks_to_users(page):
    assert findings(page.read_text()) == []


@pytest.mark.parametrize("phrase", [
    "by up to 0.14 in raw units in issue 14",
    "This started from the team's sketch (`shared/DESIGN.md`)",
    "/work/main/data/co2_mauna_loa_weekly.csv: 2284 rows",
    "saved under /root/.cache/x",
    "see PR #12",
])
def test_each_kind_of_word_is_caught(phrase):
    assert findings(f"# Page\n\nintro\n{phrase}\n")


@pytest.mark.parametrize("phrase", [
    "P right since opencv/opencv#29931",
    "POST /v1/sessions/ID/step",
    "-o /mnt/nfs/adding/model.pt",
    "pip install 'lstm-onnx-pipeline[serve]'",
])
def test_user_facing_words_pass(phrase):
    assert findings(phrase) == []
