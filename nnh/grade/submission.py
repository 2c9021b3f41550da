"""What a student submitted, made gradable: the notebooks checked (valid JSON, a
notebook, the expected name: a renamed notebook is recognised), and cells copied
and pasted with their nbgrader metadata repaired (jupyter/nbgrader#1941).
"""

from __future__ import annotations

import glob
import json
import os


def _files(root: str) -> dict[str, bytes]:
    out = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, root)] = fh.read()
    return out


def _write_files(root: str, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(data)


def _check_notebooks(sub_dir: str, expected: list[str], source_ids: dict[str, set]) -> tuple[list[str], str | None]:
    """Validate the submitted notebooks; rename a notebook submitted under another
    name when it is clearly the missing one.  Returns (details, error or None)."""
    import nbformat

    details = []
    present = sorted(os.path.basename(p) for p in glob.glob(os.path.join(sub_dir, "*.ipynb")))
    if not os.path.isdir(sub_dir) or not [f for f in os.listdir(sub_dir) if f != "timestamp.txt"]:
        return details, "the submission folder is empty"
    valid = {}
    for name in present:
        path = os.path.join(sub_dir, name)
        try:
            with open(path, encoding="utf-8") as fh:
                json.load(fh)
        except (ValueError, UnicodeDecodeError) as error:
            details.append(f"{name} is not valid JSON ({error}); it cannot be graded")
            continue
        try:
            nb = nbformat.read(path, as_version=4)
            nbformat.validate(nb)
        except Exception as error:  # noqa: BLE001 - any reason it is not a notebook
            details.append(f"{name} is not a Jupyter notebook ({type(error).__name__}: {str(error)[:200]})")
            continue
        valid[name] = nb
    missing = [name for name in expected if name not in valid]
    extra = [name for name in valid if name not in expected]
    for name in missing:
        ids = source_ids[name]
        candidates = [e for e in extra
                      if ids & {c.metadata.get("nbgrader", {}).get("grade_id") for c in valid[e].cells}]
        if len(candidates) == 1 and not os.path.exists(os.path.join(sub_dir, name)):
            os.rename(os.path.join(sub_dir, candidates[0]), os.path.join(sub_dir, name))
            details.append(f"the notebook {candidates[0]!r} was graded as {name!r} (renamed notebook)")
            valid[name] = valid.pop(candidates[0])
            extra.remove(candidates[0])
    for name in extra:
        details.append(f"the extra notebook {name!r} is not part of the assignment and was not graded")
    for name in expected:
        if name not in valid:
            path = os.path.join(sub_dir, name)
            if os.path.exists(path):  # invalid: move it away so nbgrader treats it as missing
                os.rename(path, path + ".invalid")
            details.append(f"{name} is missing or invalid: its tests score zero")
    if not any(name in valid for name in expected):
        return details, "no gradable notebook in the submission"
    return details, None


def _repair_duplicates(sub_dir: str, names: list[str]) -> list[str]:
    """A cell copied and pasted keeps its nbgrader metadata, and nbgrader's autograde fails
    on a notebook with two cells of one ``grade_id`` (jupyter/nbgrader#1941, #981).  Keep the
    metadata on the first cell of each ``grade_id`` (a test cell is then restored from the
    source, as always) and make the later copies ordinary cells: they still run, in place.
    Returns one line of feedback per repaired notebook."""
    import nbformat

    details = []
    for name in names:
        path = os.path.join(sub_dir, name)
        if not os.path.exists(path):
            continue
        nb = nbformat.read(path, as_version=4)
        seen, copies, ids = set(), [], set()
        for cell in nb.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if grade_id is not None and grade_id in seen:
                del cell.metadata["nbgrader"]
                copies.append(grade_id)
            seen.add(grade_id)
            if cell.get("id") in ids:  # a pasted cell may keep its id too
                cell.id = f"{cell.id}-copy{len(ids)}"
            ids.add(cell.get("id"))
        if copies:
            nbformat.write(nb, path)
            details.append(f"{name}: cells {sorted(set(copies))} appear more than once; the first of each "
                           "is graded, the copies run as ordinary cells")
    return details
