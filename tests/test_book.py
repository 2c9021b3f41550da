"""`make book`'s build succeeds offline with -n -W, and the pages hold what readers need."""

from __future__ import annotations

import re

import pytest

import nbgrading

REPO = nbgrading.REPO


toc_files = nbgrading.toc_files


# The `built` fixture (the book built once per run) is in tests/conftest.py.


pytestmark = [pytest.mark.book, pytest.mark.xdist_group("book")]


@pytest.mark.parametrize("page", toc_files())
def test_every_toc_page_is_built(built, page):
    html = (built / f"{page}.html").read_text()
    assert "<title>" in html
    if not page.startswith("exercises/"):  # released exercises show their stubs on purpose
        assert "Traceback" not in html, f"{page} shows an error"


CHAPTERS = [page for page in toc_files() if (REPO / f"{page}.ipynb").exists() and page.startswith("book/")]
ASSIGNMENTS = sorted(p.parent.name for p in (REPO / "solutions").glob("*/*.ipynb"))


def test_the_toc_lists_every_chapter_and_exercise():
    pages = set(toc_files())
    assert {f"book/{p.stem}" for p in (REPO / "book").glob("*.ipynb")} <= pages
    assert {f"exercises/{a}/{a}" for a in ASSIGNMENTS} <= pages


@pytest.mark.parametrize("page", CHAPTERS)
def test_chapter_shows_math_figures_numbers_and_exercises(built, page):
    html = (built / f"{page}.html").read_text()
    assert html.count('class="math') >= 2, "display math missing"
    assert "{glue" not in html and "glue:text" not in html, "a glued number was not substituted"
    images = re.findall(r'<img[^>]*src="[^"]*_images/[^"]*"[^>]*>', html)  # figures, not theme logos
    assert len(images) >= 2, "the chapter's figures are missing"
    for img in images:
        alt = re.search(r'alt="([^"]*)"', img)
        assert alt and len(alt.group(1)) > 20, f"figure without a description: {img[:200]}"
    assert re.search(r"\d\.\d", html), "no number from the experiment in the text"
    for heading in ("Summary", "Exercises"):
        assert re.search(rf"<h2>{heading}", html), f"no {heading} section"
    assert "exercises/" in html, "the chapter does not link to its graded exercise"


def test_schedules_chapter_shows_formula_plots_and_results(built):
    html = (built / "book" / "schedules.html").read_text()
    assert html.count('class="math') >= 5, "display math missing"
    assert len(re.findall(r'<img[^>]*src="[^"]*_images/', html)) >= 4, "the chapter's figures are missing"
    assert "constant" in html and "warm-up + cosine" in html
    assert re.search(r"\d+\.\d%", html), "no percentage from the experiment in the text"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_exercise_page_is_unexecuted_with_a_download(built, assignment):
    page = built / "exercises" / assignment / f"{assignment}.html"
    html = page.read_text()
    assert "NotImplementedError" in html  # the stubs are shown, not run
    downloads = list((built / "_downloads").rglob(f"{assignment}.ipynb"))
    assert downloads, "the chapter's download link to the exercise notebook is missing"
    assert (built / "_sources" / "exercises" / assignment / f"{assignment}.ipynb").exists()
