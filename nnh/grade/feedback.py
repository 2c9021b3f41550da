"""Hidden tests stay hidden: the feedback made for the student shows each test's
name, points, pass or fail and its error message, not the code of the hidden
tests; the course's ``autograded/`` keeps everything.
"""

from __future__ import annotations

import glob
import json
import os
import re


HIDDEN_NOTE = "# (hidden tests: their code is not shown in the feedback)"
#: The hidden tests of a test cell (nbgrader's markers and what is between them).
HIDDEN_REGION = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS.*?^[ \t]*### END HIDDEN TESTS[^\n]*\n?",
                            re.MULTILINE | re.DOTALL)


def hide_hidden_tests(auto_dir: str) -> dict[str, bytes]:
    """Rewrite the autograded notebooks of ``auto_dir`` for the student's feedback: in every
    test cell with hidden tests the hidden region becomes one comment line, and an error
    it raised shows only its type and message (a traceback would print the hidden lines).
    Returns {path: original bytes}, to put back once the feedback is made."""
    originals = {}
    for path in sorted(glob.glob(os.path.join(auto_dir, "*.ipynb"))):
        with open(path, "rb") as fh:
            blob = fh.read()
        nb = json.loads(blob)
        changed = False
        for cell in nb.get("cells", []):
            if not cell.get("metadata", {}).get("nbgrader", {}).get("grade"):
                continue
            source = "".join(cell["source"]) if isinstance(cell.get("source"), list) else cell.get("source", "")
            if not HIDDEN_REGION.search(source):
                continue
            cell["source"] = HIDDEN_REGION.sub(HIDDEN_NOTE + "\n", source).rstrip("\n")
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    output["traceback"] = [f"{output.get('ename')}: {output.get('evalue')}"]
            changed = True
        if changed:
            originals[path] = blob
            _replace_file(path, json.dumps(nb).encode())
    return originals


def put_back(originals: dict[str, bytes]) -> None:
    """Undo :func:`hide_hidden_tests`: the course's ``autograded/`` keeps everything."""
    for path, blob in originals.items():
        _replace_file(path, blob)


def _replace_file(path: str, data: bytes) -> None:
    """Replace the file ``path`` by ``data``, keeping its mode.  nbgrader makes the
    autograded notebooks read-only (0444), which only root may write through: the new
    content goes into a file next to it, which then takes its place."""
    mode = os.stat(path).st_mode & 0o7777
    part = path + ".nnh-part"
    with open(part, "wb") as fh:
        fh.write(data)
    os.chmod(part, mode)
    os.replace(part, path)
