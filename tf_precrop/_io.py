"""Atomic file writes: the one helper every writer of plans, reports, tables and models uses.

A file is written under a temporary name in its destination folder and moved
onto its path with ``os.replace``, so a reader (or a process killed midway)
sees either the previous content or the new content, never half a file.

Example:

>>> import json, os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "plan.json")
>>> write_json(path, {"widths": {"stem": 8}})
>>> with open(path) as f:
...     json.load(f)
{'widths': {'stem': 8}}
"""

import contextlib
import json
import os
import tempfile


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside ``path``; moved onto ``path`` when the block succeeds.

    On an exception the temporary file is removed and ``path`` keeps its previous
    content. The destination folder must exist.

    Raises:
        FileNotFoundError: the destination folder does not exist.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            "The destination folder does not exist. Expected an existing folder. "
            f"Received: path={path!r}"
        )
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path, text):
    """Writes ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def write_json(path, obj, **kwargs):
    """Writes ``obj`` as JSON (``indent=2`` unless given) to ``path`` atomically."""
    kwargs.setdefault("indent", 2)
    write_text(path, json.dumps(obj, **kwargs))
