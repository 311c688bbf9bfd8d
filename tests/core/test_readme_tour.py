"""The README's tour shows every page, each screenshot made by a browser test and copied by `make screenshots`."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PAGES = ("model", "inspect", "sensitivity", "prune", "compare", "graph")


def tour_images() -> list[str]:
    readme = (REPO / "README.md").read_text()
    tour = readme.split("## A short tour", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"!\[[^\]]*\]\(assets/screenshots/([\w-]+)\.png\)", tour)


def test_the_tour_shows_every_page_with_a_committed_screenshot():
    images = tour_images()
    assert images == [f"{page}-page" for page in PAGES]
    for name in images:
        assert (REPO / "assets" / "screenshots" / f"{name}.png").stat().st_size > 10_000, name


def test_each_tour_screenshot_is_taken_by_a_browser_test_and_copied_by_make_screenshots():
    written = set()
    for test in (REPO / "tests" / "e2e").glob("test_*.py"):
        written |= set(re.findall(r'screenshot_dir / "([\w-]+)\.png"', test.read_text()))
    tour = re.search(r"^TOUR := (.+)$", (REPO / "Makefile").read_text(), re.M).group(1).split()
    assert set(tour_images()) <= written
    assert tour == tour_images()
