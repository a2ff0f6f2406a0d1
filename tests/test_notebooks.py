"""Executes the tutorial notebooks top to bottom in FAST mode.

Each notebook runs in a fresh ipykernel of the current interpreter, with
``TF_PRECROP_FAST=1`` and a temporary working directory, and must finish
without an error output and print ``DONE`` plus its key result in its last
cell. The kernelspec is written to a temporary Jupyter data folder (put first
on ``JUPYTER_PATH``), so the kernel is always ``sys.executable`` whatever
kernelspecs the machine has, and nothing is installed into the user's folders.

FAST mode needs at most 500 CIFAR-10 images, so notebooks 02-04 run on a fresh
offline clone too: ``load_cifar10("auto")`` then falls back to the 500-image
sample bundled with the package (they get the same images as from a local
copy, whose first 500 images the sample is). To run them that way on a
machine that has the local copy, hide it:
``TF_PRECROP_CIFAR10=none python -m pytest tests/test_notebooks.py -n 0``
(the kernel inherits the environment).
"""

import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO / "notebooks"
KERNEL_NAME = "tf_precrop_test_python3"
CELL_TIMEOUT = 600
ANSI = re.compile(r"\x1b\[[0-9;]*m")

#: notebook stem -> pattern the last cell's output must match.
EXPECTED = {
    "01_quickstart": r"DONE macs_ratio=0\.(29|30|31)\d* speedup=\d+\.\d+x",
    "02_cifar10_precrop_vs_synflow": r"DONE dense=\d\.\d+; PreCrop-SynExp=\d\.\d+; uniform width=\d\.\d+; SynFlow \(unstructured\)=\d\.\d+",
    "03_deploy_tflite": r"DONE int8 is \d+\.\dx smaller than fp32, decisive_top1_agreement=(0\.9[5-9]|1\.0)\d* num_decisive=[1-9]\d*",
    "04_qat_with_tfmot": r"DONE int8_decisive_top1_agreement=(0\.9[5-9]|1\.0)\d* num_decisive=[1-9]\d* int8_val_acc=\d\.\d+",
    "05_prune_trained_model": r"DONE dense=\d\.\d+ pruned=\d\.\d+ recalibrated=\d\.\d+ finetuned=\d\.\d+ scratch=\d\.\d+ macs_ratio=0\.(49|50|51)\d",
}


def _prepend(path, variable):
    rest = os.environ.get(variable)
    return os.pathsep.join([str(path), rest]) if rest else str(path)


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """A kernelspec for ``sys.executable`` and the FAST-mode environment."""
    data_dir = tmp_path_factory.mktemp("jupyter_data")
    spec_dir = data_dir / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "tf_precrop test kernel",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", _prepend(data_dir, "JUPYTER_PATH"))
        mp.setenv("TF_PRECROP_FAST", "1")
        mp.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
        mp.setenv("KERAS_BACKEND", "tensorflow")
        mp.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
        # The checkout's package first, even if another copy is installed.
        mp.setenv("PYTHONPATH", _prepend(REPO, "PYTHONPATH"))
        mp.delenv("TF_USE_LEGACY_KERAS", raising=False)
        yield KERNEL_NAME


def _outputs(nb):
    for cell in nb.cells:
        if cell.cell_type == "code":
            yield from cell.get("outputs", [])


def _text(outputs):
    parts = []
    for out in outputs:
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif "data" in out and "text/plain" in out["data"]:
            parts.append(out["data"]["text/plain"])
    return "".join(parts)


@pytest.mark.slow
@pytest.mark.parametrize("stem", sorted(EXPECTED))
def test_notebook_runs(stem, kernel_env, tmp_path, record_property):
    nb = nbformat.read(NOTEBOOK_DIR / f"{stem}.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        nb,
        kernel_name=kernel_env,
        timeout=CELL_TIMEOUT,
        startup_timeout=180,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    start = time.perf_counter()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as e:
        pytest.fail(f"{stem} failed in FAST mode:\n{re.sub(ANSI, '', str(e))}")
    seconds = time.perf_counter() - start
    print(f"{stem}: {seconds:.1f} s")
    record_property("seconds", round(seconds, 1))

    errors = [out for out in _outputs(nb) if out.get("output_type") == "error"]
    assert not errors, f"{stem}: error outputs {[e.get('ename') for e in errors]}"
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code_cells), f"{stem}: a cell did not run"
    first = _text(code_cells[0].outputs)
    assert "FAST mode: True" in first, first
    last = _text(code_cells[-1].outputs)
    assert re.search(EXPECTED[stem], last), f"{stem}: unexpected final output {last!r}"


def test_notebooks_match_generator(tmp_path):
    """The committed .ipynb files are exactly what _make_notebooks.py writes."""
    _make_notebooks = _generator()
    assert _make_notebooks.main(["--out", str(tmp_path)]) == 0
    for stem in EXPECTED:
        written = (tmp_path / f"{stem}.ipynb").read_text(encoding="utf-8")
        committed = (NOTEBOOK_DIR / f"{stem}.ipynb").read_text(encoding="utf-8")
        assert written == committed, (
            f"{stem}.ipynb is stale: run python notebooks/_make_notebooks.py"
        )


def _generator():
    sys.path.insert(0, str(NOTEBOOK_DIR))
    try:
        import _make_notebooks
    finally:
        sys.path.remove(str(NOTEBOOK_DIR))
    return _make_notebooks


def test_notebooks_structure():
    """Title, Colab badge (only with a GitHub source) and the Colab-only install cell."""
    gen = _generator()
    for stem in EXPECTED:
        nb = nbformat.read(NOTEBOOK_DIR / f"{stem}.ipynb", as_version=4)
        text = (NOTEBOOK_DIR / f"{stem}.ipynb").read_text(encoding="utf-8")
        assert "tf-precrop/tf_precrop" not in text  # the old address, which never existed
        title = nb.cells[0]
        assert title.cell_type == "markdown" and title.source.startswith("# ")
        url = gen.colab_url(stem)
        if url is None:  # no published repository: no badge, and the cell says why
            assert "colab-badge.svg" not in title.source
            assert (
                "INSTALL_SOURCE" in title.source and "notebooks/_make_notebooks.py" in title.source
            )
        else:
            assert f"[![Open In Colab]({gen.BADGE})]({url})" in title.source
        setup = nb.cells[1]
        assert setup.cell_type == "code"
        assert f"INSTALL_SOURCE = {gen.INSTALL_SOURCE!r}\n" in setup.source
        assert 'if "google.colab" in sys.modules:' in setup.source
        assert 'FAST = os.environ.get("TF_PRECROP_FAST") == "1"' in setup.source
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "code":  # plain Python, no IPython magics
                compile(cell.source, f"{stem}[{i}]", "exec")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (None, None),
        ("tf_precrop[tfmot]", None),  # PyPI: no place on GitHub to open the notebook from
        (
            "tf_precrop[tfmot] @ git+https://github.com/me/tf_precrop",
            "https://colab.research.google.com/github/me/tf_precrop/blob/main/notebooks/01_quickstart.ipynb",
        ),
        (
            "tf_precrop @ git+https://github.com/me/tf_precrop.git@dev",
            "https://colab.research.google.com/github/me/tf_precrop/blob/dev/notebooks/01_quickstart.ipynb",
        ),
    ],
)
def test_colab_badge_follows_the_install_source(source, expected):
    assert _generator().colab_url("01_quickstart", source) == expected
