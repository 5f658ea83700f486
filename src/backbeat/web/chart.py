"""The overview's throughput chart as plain geometry: bars for an inline SVG.

Pure and small on purpose: ``static/app.js`` draws the same bars from
``/api/throughput`` when it refreshes (``drawChart``); keep the two in step.
"""

from __future__ import annotations

from typing import Any

WIDTH = 720
HEIGHT = 160
TOP = 6
"""Headroom above the tallest bar."""


def bars(series: dict[str, Any]) -> dict[str, Any]:
    """Stacked bars (succeeded below, dead above) scaled to the busiest bucket."""
    buckets = series["buckets"]
    peak = max((b["succeeded"] + b["dead"] for b in buckets), default=0) or 1
    slot = WIDTH / max(1, len(buckets))
    scale = (HEIGHT - TOP) / peak
    out = []
    for i, b in enumerate(buckets):
        ok, dead = b["succeeded"] * scale, b["dead"] * scale
        out.append(
            {
                "x": round(i * slot + 1, 2),
                "width": round(max(1.0, slot - 2), 2),
                "ok_y": round(HEIGHT - ok, 2),
                "ok_height": round(ok, 2),
                "dead_y": round(HEIGHT - ok - dead, 2),
                "dead_height": round(dead, 2),
                "title": f"{b['start'][11:16]}-{b['end'][11:16]} UTC: {b['succeeded']} succeeded, {b['dead']} dead",
            }
        )
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "peak": peak,
        "bars": out,
        "succeeded": sum(b["succeeded"] for b in buckets),
        "dead": sum(b["dead"] for b in buckets),
        "minutes": round(len(buckets) * series["bucket_seconds"] / 60),
    }
