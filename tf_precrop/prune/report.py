"""The report of ``tf-precrop prune``: ``<out stem>_report.json`` and the printed summary.

:func:`prune_report` gathers what a run did (settings, params and MACs before
and after, every channel group's width before and after, the predicted
latency of a latency budget and the TFLite export) as plain JSON-able data;
:func:`print_summary` prints it, with a table of the groups whose width changed.
"""

#: Most rows of the printed table of changed groups (the report holds them all).
MAX_ROWS = 40


def prune_report(
    args,
    model,
    pruned,
    graph,
    widths=None,
    recalibrated=None,
    latency_options=None,
    cost=None,
    export=None,
):
    """The ``<out stem>_report.json`` of a ``tf-precrop prune`` run, as a plain dict.

    Keys: ``model`` (name), ``source`` (the MODEL argument), ``settings``
    (``budget`` and ``target``, null with ``--widths``/``--plan``; ``widths``,
    ``plan``, ``importance``, ``widths_from``, ``round_to``, ``seed``,
    ``data``, ``latency`` (threads, precision, table) and ``recalibration``
    (``{"data": PATH, "samples": N}`` or null)), ``params`` and ``macs``
    (``{"before", "after"}``, :func:`tf_precrop.profile`), ``latency_ms``
    (predicted before/after, ``--budget latency`` only), ``groups`` (``{group
    key: {"before": width, "after": width}}`` for every channel group) and
    ``export`` (the :class:`~tf_precrop.export.tflite.TFLiteExport` fields, or
    null).
    """
    import tf_precrop

    before, after = tf_precrop.profile(model), tf_precrop.profile(pruned)
    old, new = graph.widths(), tf_precrop.channel_groups(pruned).widths()
    budgeted = args.target is not None
    latency = None
    if latency_options:
        latency = {
            "num_threads": latency_options["num_threads"],
            "precision": latency_options["precision"],
            "table": args.latency_table,
        }
    report = {
        "model": model.name,
        "source": args.model,
        "settings": {
            "budget": (args.budget or "params") if budgeted else None,
            "target": args.target,
            "widths": widths,
            "plan": args.plan,
            "importance": args.importance,
            "widths_from": args.widths_from if budgeted else None,
            "round_to": args.round_to,
            "seed": args.seed,
            "data": args.data,
            "latency": latency,
            "recalibration": None
            if recalibrated is None
            else {"data": args.recalibrate_data, "samples": len(recalibrated)},
        },
        "params": {"before": int(before.params), "after": int(after.params)},
        "macs": {"before": int(before.macs), "after": int(after.macs)},
        "groups": {
            str(key): {"before": int(width), "after": None if key not in new else int(new[key])}
            for key, width in old.items()
        },
        "export": None if export is None else export.to_dict(),
    }
    if cost is not None:
        report["latency_ms"] = {
            "before": float(cost.dense_ms),
            "after": float(cost.total([new[g.key] for g in graph.groups])),
        }
    return report


def print_summary(args, report, out):
    """Params/MACs (and predicted ms), the recalibration, and the groups whose width changed."""
    from tf_precrop._table import render_table

    params, macs = report["params"], report["macs"]
    print(
        f"{report['model']}: params {params['before']:,} -> {params['after']:,} "
        f"({params['after'] / max(params['before'], 1):.1%}), MACs {macs['before']:,} -> "
        f"{macs['after']:,} ({macs['after'] / max(macs['before'], 1):.1%}); wrote {out}"
    )
    if "latency_ms" in report:
        ms = report["latency_ms"]
        print(
            f"predicted LiteRT latency {ms['before']:.3f} -> {ms['after']:.3f} ms "
            f"({ms['after'] / ms['before']:.1%})"
        )
    recalibration = report["settings"]["recalibration"]
    if recalibration is not None:
        print(
            f"re-estimated BatchNormalization statistics on {recalibration['samples']} samples "
            f"of {recalibration['data']}"
        )
    if getattr(args, "quiet", False):
        return
    changed = [
        (key, g["before"], g["after"], f"{g['after'] / g['before']:.0%}")
        for key, g in report["groups"].items()
        if g["after"] is not None and g["after"] != g["before"]
    ]
    if not changed:
        print("no channel group changed width")
        return
    shown = changed[:MAX_ROWS]
    title = f"{len(changed)} of {len(report['groups'])} channel groups changed width"
    print(render_table(("group", "before", "after", "kept"), shown, title=title))
    if len(changed) > len(shown):
        print(f"... and {len(changed) - len(shown)} more (all in the report)")
