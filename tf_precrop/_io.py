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


def save_model(model, path, *, include_optimizer=True):
    """Saves a Keras model as a ``.keras`` file at ``path``, atomically.

    Keras picks the format from the file name, so the model is written to a
    ``.keras`` staging file beside ``path`` and moved onto it; a failed save
    leaves ``path`` as it was and no staging file behind.

    Args:
        model: a Keras 3 or tf_keras model.
        path: destination (conventionally ending in ``.keras``).
        include_optimizer: ``False`` saves a fresh clone with the same weights and
            no optimizer state (no slot variables, iteration count 0: what
            evaluation needs). Keras 3's clone keeps the compile settings (loss,
            optimizer class and schedule), so loading still needs any custom
            objects they name.

    Returns:
        ``path``.
    """
    if not include_optimizer:
        from tf_precrop.backend import line_of

        clone = line_of(model).keras.models.clone_model(model)
        clone.set_weights(model.get_weights())
        model = clone
    with atomic_path(path) as tmp:
        staging = tmp + ".keras"  # Keras insists on the extension
        try:
            model.save(staging)
            os.replace(staging, tmp)
        finally:
            if os.path.exists(staging):
                os.remove(staging)
    return path
