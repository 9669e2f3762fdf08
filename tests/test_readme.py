"""The README names only files that exist (the anchors' READMEs drifted; ours is checked)."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HUB_IDS = {"hub_llava/lvis_instruct4v", "hub_llava/svit", "hub_llava/llava_v1_5", "hub_llava/llava_pretrain"}


def named_paths(text: str) -> list[str]:
    candidates = re.findall(r"`([A-Za-z0-9_.\-/]+/[A-Za-z0-9_.\-]+)`", text)
    return [p for p in candidates if p not in HUB_IDS and not p.startswith(("ORG/", "hub_llava/tiny"))]


def test_every_path_in_the_readme_exists():
    paths = named_paths((REPO / "README.md").read_text(encoding="utf-8"))
    assert len(paths) > 10  # the parser finds the README's paths at all
    missing = [p for p in paths if not (REPO / p).exists() and not (REPO / "recipes" / p).exists()]
    assert missing == []


def test_make_targets_named_in_the_readme_exist():
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (REPO / ".ci" / "run").read_text(encoding="utf-8")
