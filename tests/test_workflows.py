"""One click to run: the GitHub workflow, Binder's requirements, the Colab install cell."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import nbgrading
import yaml

from nnh import colab

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONFIG = yaml.safe_load((REPO / "_config.yml").read_text())
URL, BRANCH = colab.repository(REPO / "_config.yml")
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.y*ml"))


toc_files = nbgrading.toc_files


TOC_NOTEBOOKS = [f"{p}.ipynb" for p in toc_files() if (REPO / f"{p}.ipynb").exists()]
SOURCE_NOTEBOOKS = [p.relative_to(REPO).as_posix() for p in sorted(REPO.glob("solutions/*/*.ipynb"))]


# --------------------------------------------------------------------------- GitHub workflow


def lint(paths: list[Path]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
         *map(str, paths)], capture_output=True, text=True, timeout=120)


def test_workflows_pass_the_linter():
    assert WORKFLOWS, "no workflow in .github/workflows/"
    result = lint(WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_linter_finds_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOWS[0].read_text().replace("runs-on:", "runs_on:", 1))
    result = lint([broken])
    assert result.returncode != 0 and "runs_on" in result.stdout


def _workflow_steps():
    for path in WORKFLOWS:
        for name, job in yaml.safe_load(path.read_text())["jobs"].items():
            for step in job.get("steps", []):
                yield path.name, name, job, step


def test_a_workflow_runs_make_test_and_publishes_the_book_to_pages():
    steps = list(_workflow_steps())
    assert any("make test" in step.get("run", "") for *_, step in steps), "no `make test` step"
    uploads = [step for *_, step in steps
               if step.get("uses", "").startswith("actions/upload-pages-artifact@")]
    assert uploads and uploads[0]["with"]["path"] == "_build/html"
    deploys = [(job, step) for _, _, job, step in steps
               if step.get("uses", "").startswith("actions/deploy-pages@")]
    assert deploys, "the book is not deployed to GitHub Pages"
    job, _ = deploys[0]
    assert job["permissions"] == {"pages": "write", "id-token": "write"}
    assert job["environment"]["name"] == "github-pages"
    assert "main" in job["if"], "only main is published"


def test_every_action_is_pinned_to_a_version():
    for workflow, job, _, step in _workflow_steps():
        if "uses" in step:
            action, _, version = step["uses"].partition("@")
            assert version, f"{workflow} {job}: {action} is not pinned"


# --------------------------------------------------------------------------- launch buttons, Binder


def test_launch_buttons_for_binder_colab_and_download():
    launch = CONFIG["launch_buttons"]
    assert launch["binderhub_url"] == "https://mybinder.org"
    assert launch["colab_url"] == "https://colab.research.google.com"
    assert launch["thebe"] is False  # live code needs a remote kernel: the site is offline
    assert CONFIG["html"]["use_download_button"] is True
    assert CONFIG["repository"]["url"] == URL


def test_binder_installs_nnh_from_the_repository_with_the_pinned_versions():
    requirements = REPO / "binder" / "requirements.txt"
    lines = [line.split("#")[0].strip() for line in requirements.read_text().splitlines()]
    assert "-c ../constraints.txt" in lines
    assert "." in lines or "-e ." in lines
    runtime = (REPO / "binder" / "runtime.txt").read_text().strip()
    assert runtime == f"python-{sys.version_info.major}.{sys.version_info.minor}"
    # pip resolves it as repo2docker does (from the repository root), without the network
    result = subprocess.run(
        [str(BIN / "pip"), "install", "--dry-run", "--no-deps", "--no-index", "--no-build-isolation",
         "--quiet", "--report", "-", "-r", "binder/requirements.txt"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [item["metadata"]["name"] for item in report["install"]] == ["nnh"]


# --------------------------------------------------------------------------- Colab install cell


@pytest.mark.parametrize("path", TOC_NOTEBOOKS + SOURCE_NOTEBOOKS)
def test_notebook_starts_with_the_colab_install_cell(path):
    nb = nbformat.read(REPO / path, as_version=4)
    first = colab.first_code_cell(nb)
    assert first is not None and first.source == colab.install_source(URL, BRANCH), (
        f"{path}: the first code cell is not the Colab install cell for {URL}; run "
        "`python -m nnh.colab book/*.ipynb solutions/*/*.ipynb && make exercises`")
    assert colab.is_up_to_date(nb, URL, BRANCH)
    assert first.get("outputs") == []
    if path.startswith(("solutions/", "exercises/")):
        grader = first.metadata["nbgrader"]
        assert {k: grader[k] for k in colab.NBGRADER_METADATA} == colab.NBGRADER_METADATA
        assert nb.cells.index(first) < next(
            i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == "imports")


def test_the_cell_is_silent_and_a_no_op_where_nnh_imports():
    source = colab.install_source(URL, BRANCH)
    result = subprocess.run([sys.executable, "-c", source + "\nprint(sorted(k for k in dir() "
                             "if not k.startswith('__')))"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.strip() == "['importlib']"  # nothing ran but the import check


def _run_cell_without_nnh(monkeypatch, returncode=0):
    import importlib.util
    import subprocess as subprocess_module

    calls = []

    class Completed:
        def __init__(self, args):
            self.args, self.returncode, self.stdout, self.stderr = args, returncode, "", "boom"

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nnh" else 1)
    monkeypatch.setattr(subprocess_module, "run", lambda args, **kw: calls.append(args) or Completed(args))
    exec(compile(colab.install_source(URL, BRANCH), "<colab cell>", "exec"), {})
    return calls


def test_the_cell_installs_nnh_from_the_configured_repository_when_missing(monkeypatch):
    calls = _run_cell_without_nnh(monkeypatch)
    assert [call[1:4] for call in calls] == [["-m", "pip", "install"]] * 2
    assert calls[0][-2:] == ["--no-deps", f"nnh @ git+{URL}@{BRANCH}"]
    assert calls[1][-1] == "myst-nb"  # the chapters' glue


def test_a_failed_install_says_why(monkeypatch):
    with pytest.raises(RuntimeError, match="boom"):
        _run_cell_without_nnh(monkeypatch, returncode=1)


def _notebook(nbgrader: bool, stale: str | None = None):
    meta = {"nbgrader": {"grade": False, "grade_id": "imports", "locked": True, "schema_version": 3,
                         "solution": False, "task": False}} if nbgrader else {}
    cells = [nbformat.v4.new_markdown_cell("# Title"),
             nbformat.v4.new_code_cell("import nnh", metadata=meta),
             nbformat.v4.new_code_cell("1 + 1")]
    if stale:
        cells.append(nbformat.v4.new_code_cell(f"{colab.MARKER} from {stale}"))
    return nbformat.v4.new_notebook(cells=cells)


@pytest.mark.parametrize("nbgrader", [False, True])
def test_with_install_cell_inserts_before_the_imports_once(nbgrader):
    nb = _notebook(nbgrader, stale="https://example.org/old/repo")
    before = nbformat.writes(nb)
    updated = colab.with_install_cell(nb, URL, BRANCH)
    assert nbformat.writes(nb) == before, "the input notebook was modified"
    assert [c.source.split("\n")[0] for c in updated.cells][:3] == [
        "# Title", colab.install_source(URL, BRANCH).split("\n")[0], "import nnh"]
    assert sum(c.source.startswith(colab.MARKER) for c in updated.cells) == 1
    assert ("nbgrader" in updated.cells[1].metadata) is nbgrader
    assert updated.cells[1].metadata["tags"] == ["remove-cell"]
    assert not colab.is_up_to_date(nb, URL, BRANCH) and colab.is_up_to_date(updated, URL, BRANCH)
    again = colab.with_install_cell(updated, URL, BRANCH)
    assert nbformat.writes(again) == nbformat.writes(updated)
    nbformat.validate(updated)


def test_the_command_line_updates_and_checks(tmp_path):
    path = tmp_path / "chapter.ipynb"
    nbformat.write(_notebook(False), path)
    config = ["--config", str(REPO / "_config.yml")]  # `python -m nnh.colab ...` calls main()
    assert colab.main([*config, "--check", str(path)]) == 1
    assert colab.is_up_to_date(nbformat.read(path, as_version=4), URL, BRANCH) is False
    assert colab.main([*config, str(path)]) == 0
    assert colab.main([*config, "--check", str(path)]) == 0
    assert colab.is_up_to_date(nbformat.read(path, as_version=4), URL, BRANCH)


@pytest.mark.parametrize("url", ["http://github.com/a/b", "https://github.com/a", "github.com/a/b",
                                 "https://github.com/a/b; rm -rf /"])
def test_a_bad_repository_url_is_refused(url):
    with pytest.raises(ValueError, match=r"\burl\b"):
        colab.install_source(url, "main")


def test_a_bad_branch_is_refused():
    with pytest.raises(ValueError, match=r"\bbranch\b"):
        colab.install_source(URL, "main\nimport os")
