"""The package's layout rules (issue #10), checked on the source so they cannot drift.

* Modules of one concept: no module of ``tf_precrop/`` exceeds 500 lines.
* One seam for the two Keras lines: only ``backend.py`` compares line names.
* Imports go down the pipeline (model graph → saliency → densities → widths →
  plan/rebuild → export/report): the lower stages import none of the higher
  ones at module level (a function may import lazily, as ``plan`` ↔ ``prune``).
"""

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tf_precrop"
MODULES = sorted(p for p in PACKAGE.rglob("*.py"))
MAX_LINES = 500

#: Stage → the stages it must not import at module level.
LOWER_STAGES = {
    "graph": ("saliency", "densities", "widths", "plan", "prune", "export", "training", "cli"),
    "saliency": ("widths", "plan", "prune", "export", "training", "cli"),
    "densities": ("saliency", "widths", "plan", "prune", "export", "training", "cli"),
    "widths": ("saliency", "plan", "prune", "export", "training", "cli"),
    "latency": ("plan", "prune", "training", "cli"),
    "export": ("plan", "prune", "training", "cli"),
}


def _relative(path):
    return path.relative_to(PACKAGE).as_posix()


def _stage(path):
    rel = _relative(path)
    return rel.split("/")[0].removesuffix(".py")


def test_the_package_has_modules():
    assert len(MODULES) > 40  # the glob found the package, not an empty folder


@pytest.mark.parametrize("path", MODULES, ids=_relative)
def test_module_is_at_most_500_lines(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{_relative(path)} has {lines} lines; split it by concept"


LINE_CHECK = re.compile(r"""line\.name\s*[!=]=|[!=]=\s*["'](keras3|tf_keras)["']|==\s*KERAS3""")


def test_keras_line_checks_live_only_in_the_backend_seam():
    offenders = []
    for path in MODULES:
        if _relative(path) == "backend.py":
            continue
        for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if LINE_CHECK.search(text):
                offenders.append(f"{_relative(path)}:{number}: {text.strip()}")
    assert not offenders, "\n".join(offenders)


def test_the_line_check_pattern_finds_a_line_check():
    # The pattern above would pass vacuously if it matched nothing: it matches the seam's own.
    assert LINE_CHECK.search('if line.name == "tf_keras":')
    assert LINE_CHECK.search('backend != "keras3"')
    assert not LINE_CHECK.search("line = keras_line(model)")


def _module_level_imports(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = []
    for node in tree.body:  # module level only: imports inside functions are lazy
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return [n for n in names if n.startswith("tf_precrop.")]


@pytest.mark.parametrize("stage", sorted(LOWER_STAGES))
def test_lower_stages_do_not_import_higher_ones(stage):
    paths = [p for p in MODULES if _stage(p) == stage]
    assert paths, stage
    offenders = []
    for path in paths:
        for name in _module_level_imports(path):
            imported = name.split(".")[1]
            if imported in LOWER_STAGES[stage]:
                offenders.append(f"{_relative(path)} imports {name}")
    assert not offenders, "\n".join(offenders)
