"""Charts for /stats as inline SVG drawn on the server: no JavaScript, nothing fetched, and the CSP
(`default-src 'self'`) needs no exception. Every label goes through `html.escape`."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

INK, MUTED, ACCENT, LINE = "#1f2933", "#616e7c", "#b4232a", "#d9e2ec"
PALETTE = ("#b4232a", "#d9480f", "#e67700", "#2b8a3e", "#1864ab")


def _fmt(v: float) -> str:
    return f"{int(v):,}" if float(v).is_integer() else f"{v:,.1f}"


def hbar(
    items: Sequence[tuple[str, float]],
    *,
    title: str,
    width: int = 560,
    unit: str = "",
    color: str = ACCENT,
    label_width: int = 130,
) -> str:
    """Horizontal bars, one row per (label, value), longest bar = the largest value."""
    row = 26
    height = 34 + row * max(len(items), 1)
    top = max((v for _, v in items), default=0) or 1
    span = width - label_width - 70
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="0" y="16" font-size="14" font-weight="bold" fill="{INK}">{escape(title)}</text>',
    ]
    if not items:
        parts.append(f'<text x="0" y="44" font-size="13" fill="{MUTED}">（本期没有数据）</text>')
    for i, (label, value) in enumerate(items):
        y = 30 + i * row
        w = max(span * value / top, 1 if value else 0)
        parts.append(
            f'<text x="{label_width - 8}" y="{y + 15}" font-size="13" text-anchor="end" '
            f'fill="{INK}">{escape(label[:14])}</text>'
        )
        parts.append(
            f'<rect x="{label_width}" y="{y + 3}" width="{w:.1f}" height="{row - 8}" fill="{color}" '
            f'rx="2"><title>{escape(label)}：{_fmt(value)}{escape(unit)}</title></rect>'
        )
        parts.append(
            f'<text x="{label_width + w + 6:.1f}" y="{y + 15}" font-size="12" fill="{MUTED}">'
            f"{_fmt(value)}{escape(unit)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def funnel(stages: Sequence[tuple[str, int]], *, title: str = "对接漏斗", width: int = 560) -> str:
    """The funnel: one bar per stage, as long as its count, the count and its share of the first
    stage beside it (a label never sits inside a bar too short to hold it)."""
    row, left = 34, 84
    height = 30 + row * len(stages)
    first = stages[0][1] if stages and stages[0][1] else 0
    span = width - left - 110
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" id="funnel-chart" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="0" y="16" font-size="14" font-weight="bold" fill="{INK}">{escape(title)}</text>',
    ]
    for i, (label, n) in enumerate(stages):
        y = 26 + i * row
        w = max(span * n / first, 2) if first else 2
        share = f"（{100 * n / first:.0f}%）" if first and i else ""
        parts.append(
            f'<text x="{left - 8}" y="{y + 18}" font-size="13" text-anchor="end" '
            f'fill="{INK}">{escape(label)}</text>'
        )
        parts.append(
            f'<rect x="{left}" y="{y + 2}" width="{w:.1f}" height="{row - 10}" '
            f'fill="{PALETTE[i % len(PALETTE)]}" rx="3"><title>{escape(label)}：{n}</title></rect>'
        )
        parts.append(
            f'<text x="{left + w + 6:.1f}" y="{y + 18}" font-size="13" fill="{INK}" '
            f'font-weight="bold">{n}<tspan font-weight="normal" fill="{MUTED}">{share}</tspan></text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def columns(
    months: Sequence[tuple[str, int, int]], *, title: str, legend: tuple[str, str], width: int = 760
) -> str:
    """Paired columns per month: (month, first series, second series)."""
    height, base, left = 230, 190, 36
    top = max((max(a, b) for _, a, b in months), default=0) or 1
    slot = (width - left - 10) / max(len(months), 1)
    bar = max(min(slot / 2.6, 28), 3)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" id="month-chart" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="0" y="16" font-size="14" font-weight="bold" fill="{INK}">{escape(title)}</text>',
        f'<rect x="{width - 230}" y="6" width="12" height="12" fill="{PALETTE[0]}"/>',
        f'<text x="{width - 214}" y="16" font-size="12" fill="{INK}">{escape(legend[0])}</text>',
        f'<rect x="{width - 120}" y="6" width="12" height="12" fill="{PALETTE[3]}"/>',
        f'<text x="{width - 104}" y="16" font-size="12" fill="{INK}">{escape(legend[1])}</text>',
        f'<line x1="{left}" y1="{base}" x2="{width - 4}" y2="{base}" stroke="{LINE}"/>',
    ]
    if not months:
        parts.append(f'<text x="{left}" y="100" font-size="13" fill="{MUTED}">（本期没有数据）</text>')
    for i, (month, a, b) in enumerate(months):
        x = left + i * slot + (slot - 2 * bar) / 2
        for j, (v, color) in enumerate(((a, PALETTE[0]), (b, PALETTE[3]))):
            h = (base - 36) * v / top
            parts.append(
                f'<rect x="{x + j * bar:.1f}" y="{base - h:.1f}" width="{bar - 1:.1f}" height="{h:.1f}" '
                f'fill="{color}"><title>{escape(month)} {escape(legend[j])}：{v}</title></rect>'
            )
            if v:
                parts.append(
                    f'<text x="{x + j * bar + bar / 2:.1f}" y="{base - h - 3:.1f}" font-size="10" '
                    f'text-anchor="middle" fill="{MUTED}">{v}</text>'
                )
        parts.append(
            f'<text x="{x + bar:.1f}" y="{base + 16}" font-size="11" text-anchor="middle" '
            f'fill="{INK}">{escape(month)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
