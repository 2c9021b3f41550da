"""`make book`'s build succeeds offline with -n -W, and the pages hold what readers need."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

import nbgrading

REPO = nbgrading.REPO
HTML = REPO / "_build" / "html"


def toc_files() -> list[str]:
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [chapter["file"] for chapter in part["chapters"]]
    return files


@pytest.fixture(scope="module")
def built():
    result = subprocess.run(
        [str(nbgrading.BIN / "jupyter-book"), "build", ".", "-n", "-W", "--keep-going"],
        cwd=REPO, env=nbgrading.env(), capture_output=True, text=True, timeout=1800,
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-4000:]
    assert "warning" not in result.stderr.lower(), result.stderr[-4000:]
    return HTML


pytestmark = [pytest.mark.book, pytest.mark.xdist_group("book")]


@pytest.mark.parametrize("page", toc_files())
def test_every_toc_page_is_built(built, page):
    html = (built / f"{page}.html").read_text()
    assert "<title>" in html
    if not page.startswith("exercises/"):  # released exercises show their stubs on purpose
        assert "Traceback" not in html, f"{page} shows an error"


def test_schedules_chapter_shows_formula_plots_and_results(built):
    html = (built / "book" / "schedules.html").read_text()
    assert html.count('class="math') >= 5, "display math missing"
    assert "{glue" not in html and "glue:text" not in html, "a glued number was not substituted"
    images = re.findall(r"<img[^>]*>", html)
    assert len(images) >= 4, "the chapter's figures are missing"
    for img in images:
        alt = re.search(r'alt="([^"]*)"', img)
        assert alt and len(alt.group(1)) > 20, f"figure without a description: {img[:200]}"
    assert "constant" in html and "warm-up + cosine" in html
    assert re.search(r"\d+\.\d%", html), "no percentage from the experiment in the text"


def test_exercise_page_is_unexecuted_with_a_download(built):
    page = built / "exercises" / "schedules" / "schedules.html"
    html = page.read_text()
    assert "NotImplementedError" in html  # the stubs are shown, not run
    downloads = list((built / "_downloads").rglob("schedules.ipynb"))
    assert downloads, "the chapter's download link to the exercise notebook is missing"
    assert (built / "_sources" / "exercises" / "schedules" / "schedules.ipynb").exists()
