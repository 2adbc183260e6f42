"""Bar charts drawn on the server as inline SVG: no JavaScript, no CDN, nothing to vendor.

Each bar is a link (to the admin list it sums) with a native tooltip (<title>). Colours
and text follow the admin's CSS variables, so the charts suit its light and dark themes.
Values are integers (minor units, or counts); nothing here does arithmetic on money
beyond placing a bar.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from config.currencies import exponent
from config.money_display import SYMBOLS

# The viewBox is in CSS pixels at the width the chart usually gets, so its 11px text
# stays about 11px: give a chart the width of the column it sits in.
WIDTH, HEIGHT = 880, 240
LEFT, RIGHT, TOP, BOTTOM = 56, 8, 18, 26
MAX_X_LABELS = 10


@dataclass(frozen=True)
class Bar:
    value: int
    href: str
    title: str


@dataclass(frozen=True)
class Series:
    name: str
    css_class: str  # colours it: see backoffice/static/backoffice/dashboard.css
    bars: Sequence[Bar]


def nice_step(top: int, max_ticks: int = 5) -> int:
    """The smallest of 1, 2, 2.5 or 5 × 10^k (an integer, at least 1) that reaches `top`
    in at most `max_ticks` steps: the axis ends just above the tallest bar."""
    magnitude = 1
    while True:
        for mantissa in (10, 20, 25, 50):
            step = mantissa * magnitude // 10
            if step >= 1 and step * max_ticks >= top:
                return step
        magnitude *= 10


def compact_count(value: int) -> str:
    """12 → "12", 2500 → "2.5k", 12000000 → "12M": for axis labels only."""
    for divisor, suffix in ((10**9, "B"), (10**6, "M"), (10**3, "k")):
        if value >= divisor:
            whole, rest = divmod(value, divisor)
            tenth = rest * 10 // divisor
            return f"{whole}.{tenth}{suffix}" if tenth and whole < 100 else f"{whole}{suffix}"
    return str(value)


def compact_money(currency: str) -> Callable[[int], str]:
    """An axis labeller for `currency`: 250000 usd → "$2.5k", 2500 jpy → "¥2.5k"."""
    code = currency.upper()
    unit = 10 ** exponent(code)
    prefix = SYMBOLS.get(code) or f"{code} "

    def label(minor: int) -> str:
        whole, rest = divmod(minor, unit)
        if rest and whole < 10:  # small ticks: show the cents
            return f"{prefix}{whole}.{rest * 100 // unit:02d}"
        return f"{prefix}{compact_count(whole)}"

    return label


def bar_chart(
    *,
    labels: Sequence[str],
    series: Sequence[Series],
    axis_label: Callable[[int], str] = compact_count,
    title: str,
    show_values: Callable[[int], str] | None = None,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> SafeString:
    """Grouped bars: one group per label, one bar per series in each group.

    `show_values` writes each bar's value above it (for charts with few bars).
    """
    groups = len(labels)
    top = max((bar.value for s in series for bar in s.bars), default=0)
    step = nice_step(max(top, 1))
    ticks = max(-(-top // step), 1)
    ceiling = step * ticks
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM

    def y(value: int) -> float:
        return TOP + plot_h - plot_h * value / ceiling

    parts = [
        f'<svg class="pd-chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
        'xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for tick in range(ticks + 1):
        value = step * tick
        parts.append(
            f'<line class="pd-grid" x1="{LEFT}" x2="{width - RIGHT}" y1="{y(value):.1f}" y2="{y(value):.1f}"/>'
        )
        parts.append(
            f'<text class="pd-axis" x="{LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end">'
            f"{escape(axis_label(value))}</text>"
        )
    group_w = plot_w / max(groups, 1)
    bar_w = group_w * 0.8 / max(len(series), 1)
    every = -(-groups // MAX_X_LABELS)  # label every n-th group so they never overlap
    for g, label in enumerate(labels):
        x0 = LEFT + g * group_w + group_w * 0.1
        for s_index, s in enumerate(series):
            bar = s.bars[g]
            x = x0 + s_index * bar_w
            bar_h = TOP + plot_h - y(bar.value)
            parts.append(f'<a href="{escape(bar.href)}" class="{escape(s.css_class)}">')
            parts.append(f"<title>{escape(bar.title)}</title>")
            # The link target covers the whole column, so even a zero bar can be clicked.
            parts.append(
                f'<rect class="pd-hit" x="{x:.1f}" y="{TOP}" width="{bar_w:.1f}" height="{plot_h}" fill="transparent"/>'
            )
            if bar.value:
                parts.append(
                    f'<rect class="pd-bar" x="{x:.1f}" y="{y(bar.value):.1f}" width="{max(bar_w - 1, 1):.1f}" '
                    f'height="{max(bar_h, 1):.1f}"/>'
                )
            if show_values:
                parts.append(
                    f'<text class="pd-value" x="{x + bar_w / 2:.1f}" y="{y(bar.value) - 4:.1f}" '
                    f'text-anchor="middle">{escape(show_values(bar.value))}</text>'
                )
            parts.append("</a>")
        if g % every == 0:
            parts.append(
                f'<text class="pd-axis" x="{LEFT + (g + 0.5) * group_w:.1f}" y="{height - 8}" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every interpolated text and URL above is escaped


def hbar_chart(
    *, bars: Sequence[tuple[str, Bar]], css_class: str, title: str, value_label: Callable[[int], str], width: int = 420
) -> SafeString:
    """One horizontal bar per (label, bar), labels on the left and values at the end:
    for categories with long names (payment statuses)."""
    row, label_w, value_w = 26, 104, 48
    height = row * len(bars) + 8
    top = max((bar.value for _, bar in bars), default=0)
    plot_w = width - label_w - value_w
    parts = [
        f'<svg class="pd-chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
        'xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for index, (label, bar) in enumerate(bars):
        y = 4 + index * row
        length = plot_w * bar.value / top if top else 0
        parts.append(f'<a href="{escape(bar.href)}" class="{escape(css_class)}">')
        parts.append(f"<title>{escape(bar.title)}</title>")
        parts.append(f'<rect class="pd-hit" x="0" y="{y}" width="{width}" height="{row}" fill="transparent"/>')
        parts.append(
            f'<text class="pd-axis" x="{label_w - 8}" y="{y + row / 2 + 4:.1f}" text-anchor="end">'
            f"{escape(label)}</text>"
        )
        if bar.value:
            parts.append(
                f'<rect class="pd-bar" x="{label_w}" y="{y + 4}" width="{max(length, 1):.1f}" height="{row - 8}"/>'
            )
        parts.append(
            f'<text class="pd-value" x="{label_w + length + 6:.1f}" y="{y + row / 2 + 4:.1f}">'
            f"{escape(value_label(bar.value))}</text>"
        )
        parts.append("</a>")
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every interpolated text and URL above is escaped
