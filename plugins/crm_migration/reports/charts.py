"""Charts for the import report: inline SVG, no scripts, no external assets (the page works offline, in
an iframe inside Airflow, and as a file attached to a ticket).

- ``funnel``: per entity, the legacy rows split into loaded / merged / excluded / quarantined (one bar each,
  the segments proportional to the rows; a bar that does not add up to the source shows the gap in red);
- ``bars``: one horizontal bar per label (seconds per stage);
- ``trend``: one line per series over nights (rehearsal rows/s, forecast window).
"""

from __future__ import annotations

from html import escape

from crm_migration.model.outcomes import ROW_OUTCOMES

FATES = tuple(zip(ROW_OUTCOMES, ("#2e7d32", "#1565c0", "#9e9e9e", "#ef6c00"), strict=True))  # outcome, colour
GAP = "#c62828"
_FONT = "font-family='system-ui,sans-serif' font-size='12'"


def _svg(width: int, height: int, body: str, title: str) -> str:
    return (f"<svg xmlns='http://www.w3.org/2000/svg' role='img' width='{width}' height='{height}'"
            f" viewBox='0 0 {width} {height}' class='chart'><title>{escape(title)}</title>{body}</svg>")


def funnel(entities: dict[str, dict], width: int = 720) -> str:
    """entities: name -> counts with 'source' and each fate. One bar per entity, the legend on top."""
    label_w, bar_w, row_h = 120, width - 120 - 150, 26
    legend = "".join(
        f"<rect x='{label_w + k * 110}' y='4' width='12' height='12' fill='{color}'/>"
        f"<text x='{label_w + k * 110 + 16}' y='15' {_FONT}>{name}</text>"
        for k, (name, color) in enumerate((*FATES, ("unaccounted", GAP))))
    rows = []
    for n, (entity, c) in enumerate(entities.items()):
        y = 26 + n * row_h
        source = c.get("source") or 0
        x = float(label_w)
        segs = []
        for fate, color in FATES:
            v = c.get(fate) or 0
            w = bar_w * v / source if source else 0
            if w > 0:
                segs.append(f"<rect x='{x:.1f}' y='{y}' width='{w:.1f}' height='18' fill='{color}'>"
                            f"<title>{escape(entity)} {fate}: {v:,}</title></rect>")
            x += w
        gap = source - sum(c.get(f) or 0 for f, _ in FATES)
        if gap and source:
            w = bar_w * abs(gap) / source
            segs.append(f"<rect x='{x:.1f}' y='{y}' width='{w:.1f}' height='18' fill='{GAP}'>"
                        f"<title>{escape(entity)} unaccounted: {gap:,}</title></rect>")
        rows.append(f"<text x='0' y='{y + 13}' {_FONT}>{escape(entity)}</text>{''.join(segs)}"
                    f"<text x='{label_w + bar_w + 8}' y='{y + 13}' {_FONT}>{source:,} legacy rows</text>")
    return _svg(width, 30 + len(entities) * row_h, legend + "".join(rows),
                "legacy rows per entity: loaded, merged, excluded, quarantined")


def bars(values: list[tuple[str, float]], unit: str = "s", width: int = 720, title: str = "") -> str:
    """One horizontal bar per (label, value)."""
    label_w, row_h = 220, 20
    bar_w = width - label_w - 90
    top = max((v for _, v in values), default=0) or 1
    rows = "".join(
        f"<text x='0' y='{n * row_h + 13}' {_FONT}>{escape(label)}</text>"
        f"<rect x='{label_w}' y='{n * row_h + 2}' width='{max(1.0, bar_w * v / top):.1f}' height='14' fill='#5c6bc0'>"
        f"<title>{escape(label)}: {v:,.2f} {unit}</title></rect>"
        f"<text x='{label_w + bar_w * v / top + 6:.1f}' y='{n * row_h + 13}' {_FONT}>{v:,.1f} {unit}</text>"
        for n, (label, v) in enumerate(values))
    return _svg(width, len(values) * row_h + 4, rows, title or "time per stage")


def trend(points: list[str], series: dict[str, list[float | None]], width: int = 720, height: int = 180,
          title: str = "") -> str:
    """Lines over nights: points are the x labels, series name -> values (None: no value that night); each
    series is scaled to its own maximum (rows/s and seconds share one chart), its latest value labelled."""
    left, right, top, bottom = 10, 240, 10, 30
    w, h = width - left - right, height - top - bottom
    colors = ("#1565c0", "#ef6c00", "#2e7d32", "#6a1b9a")
    body = [f"<line x1='{left}' y1='{top + h}' x2='{left + w}' y2='{top + h}' stroke='#99a'/>"]
    step = w / max(1, len(points) - 1)
    for k, label in enumerate(points):
        if len(points) <= 12 or k % max(1, len(points) // 12) == 0:
            body.append(f"<text x='{left + k * step:.1f}' y='{top + h + 16}' {_FONT}>{escape(label)}</text>")
    for n, (name, values) in enumerate(series.items()):
        color = colors[n % len(colors)]
        top_v = max((v for v in values if v is not None), default=0) or 1
        xy = [(left + k * step, top + h - h * v / top_v) for k, v in enumerate(values) if v is not None]
        if len(xy) > 1:
            body.append(f"<polyline fill='none' stroke='{color}' stroke-width='2' points='"
                        + " ".join(f"{x:.1f},{y:.1f}" for x, y in xy) + "'/>")
        body += [f"<circle cx='{x:.1f}' cy='{y:.1f}' r='3' fill='{color}'/>" for x, y in xy]
        last = next((v for v in reversed(values) if v is not None), None)
        body.append(f"<text x='{left + w + 10}' y='{top + 14 + n * 16}' {_FONT} fill='{color}'>"
                    f"{escape(name)}: {'' if last is None else f'{last:,.1f}'}</text>")
    return _svg(width, height, "".join(body), title or "trend")
