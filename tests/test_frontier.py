"""benchmarks/frontier.py: row selection, per-method means, the table and the plot (nothing timed)."""

import json
from pathlib import Path

import builders
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "frontier.py"


def _script():
    return builders.benchmark_script("frontier")


def _row(variant, budget, compress, seed, acc, params, macs, ms=None, density=None, **changes):
    row = dict(
        model="resnet20",
        variant=variant,
        budget=budget,
        compress=compress,
        seed=seed,
        recipe="cpu",
        epochs=20,
        train_size=45000,
        val_accuracy=acc,
        params=params,
        macs=macs,
        kept_kernel_density=density,
        measured_ms=ms,
        tflite_bytes=1000,
        saved_model=f"models/{variant}_{budget}{compress:g}x_seed{seed}.keras",
    )
    row.update(changes)
    return row


def _rows():
    return [
        _row("dense", "-", 1.0, 0, 0.86, 274042, 40813184, ms=0.45),
        _row("dense", "-", 1.0, 1, 0.88, 274042, 40813184, ms=0.47),
        # uniform width: 20x is the smaller model, listed first after 10x to test the sorting
        _row("uniform_width", "macs", 10.0, 0, 0.76, 27675, 4080840, ms=0.16),
        _row("uniform_width", "macs", 10.0, 1, 0.78, 27675, 4080840, ms=0.14),
        _row("uniform_width", "macs", 20.0, 0, 0.70, 14290, 2024332, ms=0.10),
        _row("precrop_synexp", "macs", 10.0, 0, 0.775, 29396, 4047974, ms=0.15),
        _row("precrop_synexp", "params", 10.0, 0, 0.79, 27324, 9865120, ms=0.20),
        _row("precrop_latency", "macs", 10.0, 0, 0.7978, 47323, 6183940, ms=0.174),
        _row("synflow_masked", "params", 10.0, 0, 0.80, 274042, 40813184, ms=0.46, density=0.1),
        _row("synflow_masked", "params", 20.0, 0, 0.74, 274042, 40813184, ms=0.44, density=0.05),
    ]


def test_select_rows_filters_schedule_model_and_missing_files(tmp_path):
    m = _script()
    wanted = [
        _row("dense", "-", 1.0, 0, 0.86, 274042, 40813184),
        _row("uniform_width", "macs", 10.0, 0, 0.77, 27675, 4080840),
    ]
    absent = _row("precrop_synexp", "macs", 10.0, 0, 0.775, 29396, 4047974)
    unsaved = _row("precrop_latency", "macs", 10.0, 0, 0.79, 47323, 6183940, saved_model=None)
    others = [
        _row("dense", "-", 1.0, 0, 0.85, 274042, 40813184, epochs=15),
        _row("dense", "-", 1.0, 0, 0.59, 274042, 40813184, recipe="short"),
        _row("dense", "-", 1.0, 0, 0.60, 274042, 40813184, train_size=10000),
        _row("dense", "-", 1.0, 0, 0.80, 100000, 9000000, model="shufflenet_v2"),
    ]
    no_recipe = _row("dense", "-", 1.0, 0, 0.59, 274042, 40813184)
    del no_recipe["recipe"]  # the old rows: read as "short"
    for r in [*wanted, *others, no_recipe]:
        (tmp_path / r["saved_model"]).parent.mkdir(exist_ok=True)
        (tmp_path / r["saved_model"]).write_bytes(b"x")
    runs = [wanted[0], *others, absent, no_recipe, wanted[1], unsaved]
    rows, missing = m.select_rows(runs, root=tmp_path)
    assert rows == wanted
    assert missing == [absent, unsaved]
    shuffle, none_missing = m.select_rows(runs, model="shufflenet_v2", root=tmp_path)
    assert [r["val_accuracy"] for r in shuffle] == [0.80] and none_missing == []
    short, _ = m.select_rows(runs, recipe="short", epochs=20, root=tmp_path)
    assert [r["val_accuracy"] for r in short] == [0.59, 0.59]


def test_method_means_are_per_variant_budget_compress_and_sorted_by_x():
    m = _script()
    means = m.method_means(_rows(), "params")
    assert list(means) == [
        "uniform_width",
        "precrop_synexp_macs",
        "precrop_synexp_params",
        "precrop_latency",
        "synflow_masked",
    ]
    uniform = means["uniform_width"]
    assert [(p["compress"], p["x"], p["n"]) for p in uniform] == [
        (20.0, 14290, 1),
        (10.0, 27675, 2),
    ]
    assert uniform[0]["val_accuracy"] == pytest.approx(0.70)
    assert uniform[1]["val_accuracy"] == pytest.approx(0.77)
    # the masked models keep their stored (dense) params; equal x sorts by compression
    masked = means["synflow_masked"]
    assert [(p["x"], p["compress"], p["val_accuracy"]) for p in masked] == [
        (274042, 10.0, 0.80),
        (274042, 20.0, 0.74),
    ]
    assert means["precrop_synexp_params"][0]["x"] == 27324
    by_ms = m.method_means(_rows(), "measured_ms")
    assert [p["x"] for p in by_ms["uniform_width"]] == [pytest.approx(0.10), pytest.approx(0.15)]
    assert [p["compress"] for p in by_ms["synflow_masked"]] == [20.0, 10.0]
    assert m.dense_accuracy(_rows()) == pytest.approx(0.87)


def test_method_means_leave_out_untimed_rows():
    m = _script()
    rows = [
        _row("uniform_width", "macs", 10.0, 0, 0.76, 27675, 4080840, ms=0.16),
        _row("uniform_width", "macs", 10.0, 1, 0.78, 27675, 4080840, ms=None),
    ]
    (point,) = m.method_means(rows, "measured_ms")["uniform_width"]
    assert (point["n"], point["x"], point["val_accuracy"]) == (1, 0.16, 0.76)
    (point,) = m.method_means(rows, "macs")["uniform_width"]
    assert (point["n"], point["val_accuracy"]) == (2, pytest.approx(0.77))
    assert m.dense_accuracy(rows) is None


def test_markdown_from_json(tmp_path):
    m = _script()
    rows = [
        _row("synflow_masked", "params", 10.0, 0, 0.80, 274042, 40813184, ms=0.4567, density=0.1),
        _row("precrop_latency", "macs", 10.0, 0, 0.7978, 47323, 6183940, ms=0.1744),
        _row("dense", "-", 1.0, 0, 0.8594, 274042, 40813184, ms=0.5),
        _row("precrop_synexp", "macs", 10.0, 1, 0.7754, 29396, 4047974, ms=None),
    ]
    path = tmp_path / "frontier.json"
    path.write_text(
        json.dumps({"meta": {}, "rows": [{k: r[k] for k in m.ROW_FIELDS} for r in rows]})
    )
    assert m.markdown_from_json(path).splitlines() == [
        "| model | variant | budget | compression | seed | val acc | params | MACs | measured ms |",
        "|---|---|---|---|---|---|---|---|---|",
        "| resnet20 | dense | – | – | 0 | 85.94% | 274,042 | 40,813,184 | 0.500 |",
        "| resnet20 | PreCrop (SynExp, MACs budget) | macs | 10× | 1 | 77.54% | 29,396 | 4,047,974 | – |",
        "| resnet20 | PreCrop (latency budget) | latency of uniform width (macs) | 10× | 0 | 79.78% "
        "| 47,323 | 6,183,940 | 0.174 |",
        "| resnet20 | SynFlow masks (weight level) | params | 10× | 0 | 80.00% "
        "| 274,042 (10.0% non-zero kernels) | 40,813,184 | 0.457 |",
    ]


def test_markdown_flag_prints_the_json_table_and_times_nothing(tmp_path, capsys, monkeypatch):
    m = _script()
    row = _row("uniform_width", "macs", 10.0, 0, 0.7702, 27675, 4080840, ms=0.157)
    path = tmp_path / "frontier.json"
    path.write_text(json.dumps({"meta": {}, "rows": [{k: row[k] for k in m.ROW_FIELDS}]}))

    def no_timing(*args, **kwargs):
        raise AssertionError("--markdown must not time anything")

    monkeypatch.setattr(m, "measure", no_timing)
    assert m.main(["--markdown", "--out", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert (
        out[-1]
        == "| resnet20 | uniform width | macs | 10× | 0 | 77.02% | 27,675 | 4,080,840 | 0.157 |"
    )
    assert len(out) == 3


def test_default_paths():
    m = _script()
    json_path, png = m.default_paths("resnet20", "cpu", 20)
    assert Path(json_path).relative_to(SCRIPT.parents[1]) == Path(
        "benchmarks/results/frontier.json"
    )
    assert Path(png).relative_to(SCRIPT.parents[1]) == Path("docs/img/cifar_frontier_cpu20.png")
    json_path, png = m.default_paths("shufflenet_v2", "cpu", 20)
    assert Path(json_path).name == "frontier_shufflenet_v2_cpu20.json"
    assert Path(png).name == "cifar_frontier_shufflenet_v2_cpu20.png"


def test_plot_writes_a_png_with_three_panels(tmp_path):
    m = _script()
    path = tmp_path / "frontier.png"
    fig = m.plot_frontier(_rows(), path, title="synthetic")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    axes = fig.axes
    assert [ax.get_xscale() for ax in axes] == ["log", "log", "linear"]
    # one line per method through its means, and the dense line, on every panel
    for ax in axes:
        lines = ax.get_lines()
        assert len(lines) == 5 + 1
        assert lines[-1].get_linestyle() == "--"
        assert lines[-1].get_ydata()[0] == pytest.approx(87.0)
    uniform = axes[0].get_lines()[0]
    assert list(uniform.get_xdata()) == [14290, 27675]
    assert list(uniform.get_ydata()) == [pytest.approx(70.0), pytest.approx(77.0)]
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == [
        "dense",
        "uniform width",
        "PreCrop (SynExp, MACs budget)",
        "PreCrop (SynExp, params budget)",
        "PreCrop (latency budget)",
        "SynFlow masks (weight level)",
        "one seed (lines: means)",
    ]


def test_measure_converts_each_file_and_times_identical_bytes_once(tmp_path):
    import keras

    import tf_precrop
    from tf_precrop.latency.measure import model_flatbuffer

    m = _script()

    def tiny(filters):
        keras.utils.set_random_seed(0)
        return keras.Sequential([
            keras.Input((8, 8, 3)), keras.layers.Conv2D(filters, 3),
            keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10),
        ])

    small, wide = tiny(4), tiny(32)
    (tmp_path / "models").mkdir()
    small.save(tmp_path / "models" / "a.keras")
    small.save(tmp_path / "models" / "b.keras")  # the same weights: the same flatbuffer
    wide.save(tmp_path / "models" / "c.keras")
    rows = [
        _row("uniform_width", "macs", 10.0, s, 0.7, tf_precrop.profile(model).params, 1, saved_model=f"models/{f}.keras")
        for s, (f, model) in enumerate([("a", small), ("b", small), ("c", wide)])
    ]
    out = m.measure(rows, threads=1, rounds=2, runs=3, root=tmp_path)
    assert [r["seed"] for r in out] == [0, 1, 2] and [tuple(r) for r in out] == [m.ROW_FIELDS] * 3
    loaded = [keras.saving.load_model(tmp_path / "models" / f"{f}.keras") for f in "abc"]
    assert [r["tflite_bytes"] for r in out] == [len(model_flatbuffer(x, "fp32")) for x in loaded]
    assert out[0]["tflite_bytes"] < out[2]["tflite_bytes"]
    assert out[0]["measured_ms"] == out[1]["measured_ms"] > 0  # timed once, for both rows
    assert out[2]["measured_ms"] > 0
