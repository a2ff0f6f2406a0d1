"""Text tables rendered with rich (ships with Keras 3)."""

import io


def render_table(columns, rows, title=None, width=120):
    """Renders rows as a plain-text table (no colour codes) and returns it."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=False, header_style="bold")
    for col in columns:
        justify = "left" if col in columns[:1] or col.startswith(("layer", "group", "class")) else "right"
        table.add_column(col, justify=justify, overflow="fold")
    for row in rows:
        table.add_row(*[_fmt(v) for v in row])
    buffer = io.StringIO()
    Console(
        file=buffer, width=width, color_system=None, force_terminal=False, force_jupyter=False
    ).print(table)
    return buffer.getvalue().rstrip()


def _fmt(value):
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
