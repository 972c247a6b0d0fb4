"""Aggregate plots across a sweep, drawn as inline SVG (no JavaScript, no plotting library).

Why: a sweep of many seeds and faults is read at a glance — which seeds failed, whether a
fault kind slows the store down — not row by row. How: ``verdict_grid`` draws one cell per
(checker, seed), coloured by verdict; ``throughput_by_fault`` and ``latency_by_fault``
group runs by their fault set and draw bars (mean ops/s of acknowledged ops over the main
phase, with the min-max range; median p50/p95/p99 latency of ok calls per operation). Every
figure comes from the runs' results.json ``run.summary`` as ``kvcheck run`` wrote it.
"""

from __future__ import annotations

import html
import statistics
from collections import defaultdict
from collections.abc import Sequence

from kvcheck.serve.store import RunRow

COLORS = {"valid": "#2e7d32", "invalid": "#c62828", "unknown": "#f9a825", "none": "#9e9e9e"}
SERIES_COLORS = ["#1565c0", "#ef6c00", "#6a1b9a", "#00838f", "#ad1457"]


def _esc(s: object) -> str:
    return html.escape(str(s), quote=True)


def fault_label(row: RunRow) -> str:
    return "+".join(row.faults) if row.faults else "none"


def verdict_grid(rows: Sequence[RunRow]) -> str:
    """Checkers down, seeds across; a run with several tests of one seed shows its worst."""
    rank = {"invalid": 3, "unknown": 2, "valid": 1, "none": 0}
    cells: dict[tuple[str, int], str] = {}
    for r in rows:
        if r.seed is None:
            continue
        for name, verdict in (r.checkers or {"(no results)": r.verdict}).items():
            old = cells.get((name, r.seed))
            if old is None or rank[verdict] > rank[old]:
                cells[(name, r.seed)] = verdict
    if not cells:
        return '<p class="muted">No runs with a seed.</p>'
    seeds = sorted({s for _, s in cells})
    names = sorted({n for n, _ in cells})
    cw = max(4, min(18, 900 // max(1, len(seeds))))
    left, top, ch = 130, 20, 22
    width = max(left + cw * len(seeds) + 20, left + 60 + 80 * len(COLORS))
    height = top + ch * len(names) + 40
    out = [f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'role="img" aria-label="verdicts by seed">']
    for j, name in enumerate(names):
        y = top + j * ch
        out.append(f'<text x="{left - 6}" y="{y + ch * 0.7}" text-anchor="end">{_esc(name)}</text>')
        for i, seed in enumerate(seeds):
            cell = cells.get((name, seed))
            if cell is None:
                continue
            out.append(f'<rect x="{left + i * cw}" y="{y}" width="{cw - 1}" height="{ch - 2}" '
                       f'fill="{COLORS[cell]}"><title>seed {seed}: {name} {cell}</title></rect>')
    step = max(1, len(seeds) // 10)
    for i in range(0, len(seeds), step):
        out.append(f'<text x="{left + i * cw}" y="{top + ch * len(names) + 14}" class="tick">{seeds[i]}</text>')
    out.append(f'<text x="{left}" y="{height - 4}" class="axis">seed</text>')
    legend_x = left + 60
    for k, (verdict, color) in enumerate(COLORS.items()):
        x = legend_x + k * 80
        out.append(f'<rect x="{x}" y="{height - 14}" width="10" height="10" fill="{color}"/>'
                   f'<text x="{x + 14}" y="{height - 5}" class="tick">{verdict}</text>')
    out.append("</svg>")
    return "".join(out)


def _bars(title: str, groups: list[str], series: list[str], values: dict[tuple[str, str], float],
          ranges: dict[tuple[str, str], tuple[float, float]] | None, unit: str) -> str:
    if not groups or not values:
        return f'<p class="muted">{_esc(title)}: no data.</p>'
    top_value = max([*values.values(), *(hi for _, hi in (ranges or {}).values())]) or 1.0
    left, top, plot_h = 70, 24, 180
    bw = 18
    gw = max(bw * len(series) + 24, 7 * max(len(g) for g in groups) + 12)  # room for the labels
    width = max(left + gw * len(groups) + 20 + 90, left + 7 * len(title))
    height = top + plot_h + 50
    out = [f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'role="img" aria-label="{_esc(title)}">',
           f'<text x="{left}" y="14" class="title">{_esc(title)}</text>']
    for k in range(5):
        v = top_value * k / 4
        y = top + plot_h - plot_h * k / 4
        out.append(f'<line x1="{left}" x2="{left + gw * len(groups)}" y1="{y}" y2="{y}" class="grid"/>'
                   f'<text x="{left - 4}" y="{y + 4}" text-anchor="end" class="tick">{v:.3g}</text>')
    out.append(f'<text x="8" y="{top + plot_h / 2}" class="axis" transform="rotate(-90 8 {top + plot_h / 2})" '
               f'text-anchor="middle">{_esc(unit)}</text>')
    for gi, group in enumerate(groups):
        gx = left + gi * gw + 12
        for si, s in enumerate(series):
            bar = values.get((group, s))
            if bar is None:
                continue
            v = bar
            h = plot_h * v / top_value
            x = gx + si * bw
            color = SERIES_COLORS[si % len(SERIES_COLORS)]
            out.append(f'<rect x="{x}" y="{top + plot_h - h}" width="{bw - 2}" height="{h}" fill="{color}">'
                       f'<title>{_esc(group)} {_esc(s)}: {v:.4g} {_esc(unit)}</title></rect>')
            if ranges and (group, s) in ranges:
                lo, hi = ranges[(group, s)]
                cx = x + (bw - 2) / 2
                y1, y2 = top + plot_h - plot_h * lo / top_value, top + plot_h - plot_h * hi / top_value
                out.append(f'<line x1="{cx}" x2="{cx}" y1="{y1}" y2="{y2}" class="whisker"/>')
        out.append(f'<text x="{gx}" y="{top + plot_h + 16}" class="tick">{_esc(group)}</text>')
    lx = left + gw * len(groups) + 10
    for si, s in enumerate(series):
        color = SERIES_COLORS[si % len(SERIES_COLORS)]
        out.append(f'<rect x="{lx}" y="{top + si * 16}" width="10" height="10" fill="{color}"/>'
                   f'<text x="{lx + 14}" y="{top + si * 16 + 9}" class="tick">{_esc(s)}</text>')
    out.append("</svg>")
    return "".join(out)


def _summary(row: RunRow) -> dict:
    run = row.results.get("run") if isinstance(row.results.get("run"), dict) else None
    summary = run.get("summary") if isinstance(run, dict) else None
    return summary if isinstance(summary, dict) else {}


def ops_per_second(row: RunRow) -> float | None:
    """Acknowledged (ok) client ops per second of the main phase, as the run measured it."""
    summary = _summary(row)
    ops = summary.get("ops")
    run = row.results.get("run") or {}
    phases = run.get("phases") if isinstance(run, dict) else None
    seconds = (phases or {}).get("main_end") or row.config.get("time_limit")
    if not isinstance(ops, dict) or not isinstance(seconds, int | float) or seconds <= 0:
        return None
    ok = sum(int(v.get("ok", 0)) for v in ops.values() if isinstance(v, dict))
    return ok / float(seconds)


def throughput_by_fault(rows: Sequence[RunRow]) -> str:
    per: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        v = ops_per_second(r)
        if v is not None:
            per[fault_label(r)].append(v)
    groups = sorted(per)
    values = {(g, "ops/s"): statistics.fmean(per[g]) for g in groups}
    ranges = {(g, "ops/s"): (min(per[g]), max(per[g])) for g in groups}
    return _bars("ok ops/s by fault kind (mean, min-max)", groups, ["ops/s"], values, ranges, "ops/s")


def latency_by_fault(rows: Sequence[RunRow]) -> list[str]:
    """One chart per operation: median over runs of each run's p50/p95/p99 (ok calls)."""
    per: dict[str, dict[tuple[str, str], list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        lat = _summary(r).get("latency_ms")
        if not isinstance(lat, dict):
            continue
        for f, pct in lat.items():
            if not isinstance(pct, dict):
                continue
            for p in ("p50", "p95", "p99"):
                if isinstance(pct.get(p), int | float):
                    per[str(f)][(fault_label(r), p)].append(float(pct[p]))
    charts = []
    for f in sorted(per):
        groups = sorted({g for g, _ in per[f]})
        values = {k: statistics.median(v) for k, v in per[f].items()}
        charts.append(_bars(f"{f} latency by fault kind (median over runs)", groups, ["p50", "p95", "p99"],
                            values, None, "ms"))
    return charts
