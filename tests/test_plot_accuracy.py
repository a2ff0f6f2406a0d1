"""benchmarks/plot_accuracy.py: the paired-difference table and the schedule filter."""

import json

import builders


def _script():
    return builders.benchmark_script("plot_accuracy")


def _row(variant, budget, compress, seed, acc, model="resnet20", recipe="cpu", epochs=20):
    return dict(model=model, variant=variant, budget=budget, compress=compress, seed=seed,
                val_accuracy=acc, recipe=recipe, epochs=epochs, params=1, macs=1,
                params_ratio=0.1, macs_ratio=0.1, kept_kernel_density=None)


def test_paired_table_pairs_seeds_present_on_both_sides():
    m = _script()
    runs = [
        _row("uniform_width", "macs", 10.0, 0, 0.7700),
        _row("uniform_width", "macs", 10.0, 1, 0.7740),
        _row("uniform_width", "macs", 10.0, 2, 0.7696),  # no PreCrop twin: left out
        _row("precrop_synexp", "macs", 10.0, 0, 0.7754),
        _row("precrop_synexp", "macs", 10.0, 1, 0.7710),
        _row("precrop_synexp", "macs", 10.0, 3, 0.9000),  # no uniform twin: left out
        _row("precrop_synexp", "macs", 10.0, 0, 0.1000, model="resnet56"),  # other model
    ]
    lines = m.paired_table(runs).splitlines()
    # seed 0: 77.54 - 77.00 = +0.54; seed 1: 77.10 - 77.40 = -0.30; mean +0.12; ahead on 1
    assert lines[2:] == [
        "| PreCrop (macs) − uniform width (macs) | 10× | +0.5 (s0) / -0.3 (s1) | +0.1 | 1 of 2 |"
    ]


def test_paired_table_names_each_precrop_variant():
    m = _script()
    runs = [
        _row("synflow_masked", "params", 10.0, 0, 0.7826),
        _row("synflow_masked", "params", 10.0, 1, 0.7900),
        _row("precrop_synexp", "params", 10.0, 0, 0.7740),
        _row("precrop_synflow", "params", 10.0, 0, 0.7856),
        _row("precrop_synflow", "params", 10.0, 1, 0.7890),
        _row("uniform_width", "macs", 10.0, 0, 0.7702),
        _row("precrop_latency", "macs", 10.0, 0, 0.7636),
    ]
    lines = m.paired_table(runs).splitlines()
    assert lines[2:] == [
        "| PreCrop (params) − SynFlow unstructured (masked) (params) | 10× | -0.9 (s0) | -0.9 | 0 of 1 |",
        "| PreCrop (latency) − uniform width (macs) | 10× | -0.7 (s0) | -0.7 | 0 of 1 |",
        "| PreCrop fitted to SynFlow (params) − SynFlow unstructured (masked) (params) | 10× "
        "| +0.3 (s0) / -0.1 (s1) | +0.1 | 1 of 2 |",
    ]


def test_paired_table_without_pairs_is_the_header_only():
    m = _script()
    lines = m.paired_table([_row("dense", "-", 1.0, 0, 0.86)]).splitlines()
    assert lines == [
        "| comparison | compression | per-seed difference (points) | mean | seeds ahead |",
        "|---|---|---|---|---|",
    ]


def test_main_keeps_only_the_chosen_schedule(tmp_path, capsys):
    m = _script()
    runs = [
        _row("uniform_width", "macs", 10.0, 0, 0.7700),
        _row("precrop_synexp", "macs", 10.0, 0, 0.7800),
        _row("precrop_synexp", "macs", 10.0, 0, 0.5000, epochs=15),  # other schedule length
        _row("uniform_width", "macs", 10.0, 0, 0.9000, recipe="short", epochs=20),
    ]
    results = tmp_path / "acc.json"
    results.write_text(json.dumps({"runs": runs}))
    png = tmp_path / "acc.png"
    args = ["--results", str(results), "--out", str(png), "--recipe", "cpu", "--epochs", "20", "--paired"]
    assert m.main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "| PreCrop (macs) − uniform width (macs) | 10× | +1.0 (s0) | +1.0 | 1 of 1 |"
    assert png.stat().st_size > 0


def test_markdown_and_paired_tables_print_as_separate_tables(tmp_path, capsys):
    m = _script()
    runs = [_row("uniform_width", "macs", 10.0, 0, 0.7700), _row("precrop_synexp", "macs", 10.0, 0, 0.7800)]
    results = tmp_path / "acc.json"
    results.write_text(json.dumps({"runs": runs}))
    args = ["--results", str(results), "--out", str(tmp_path / "a.png"), "--recipe", "cpu",
            "--epochs", "20", "--markdown", "--paired"]
    assert m.main(args) == 0
    out = capsys.readouterr().out.splitlines()
    first = out.index("| comparison | compression | per-seed difference (points) | mean | seeds ahead |")
    assert out[first - 1] == "" and out[first - 2].startswith("| resnet20 | 10× | macs |")


def test_paired_tables_gives_each_model_its_own_table():
    m = _script()
    runs = [
        _row("uniform_width", "macs", 10.0, 0, 0.7700),
        _row("precrop_synexp", "macs", 10.0, 0, 0.7800),
        _row("uniform_width", "macs", 2.0, 0, 0.8010, model="shufflenet_v2_x0_5"),
        _row("precrop_synexp", "macs", 2.0, 0, 0.7990, model="shufflenet_v2_x0_5"),
        _row("precrop_synexp", "macs", 2.0, 1, 0.9000, model="shufflenet_v2_x0_5"),  # no twin
        _row("precrop_latency", "macs", 2.0, 0, 0.8123, model="shufflenet_v2_x0_5"),
        _row("dense", "-", 1.0, 0, 0.86, model="resnet56"),  # no pair: no table
    ]
    header = [
        "| comparison | compression | per-seed difference (points) | mean | seeds ahead |",
        "|---|---|---|---|---|",
    ]
    assert m.paired_tables(runs).splitlines() == [
        *header,
        "| PreCrop (macs) − uniform width (macs) | 10× | +1.0 (s0) | +1.0 | 1 of 1 |",
        "",
        "**shufflenet_v2_x0_5**",
        "",
        *header,
        # 79.90 - 80.10 = -0.20
        "| PreCrop (macs) − uniform width (macs) | 2× | -0.2 (s0) | -0.2 | 0 of 1 |",
        # 81.23 - 80.10 = +1.13
        "| PreCrop (latency) − uniform width (macs) | 2× | +1.1 (s0) | +1.1 | 1 of 1 |",
    ]
    assert m.paired_tables([_row("dense", "-", 1.0, 0, 0.86)]).splitlines() == header
