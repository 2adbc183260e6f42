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

WIDTH, HEIGHT = 640, 220
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


def nice_step(top: int, ticks: int = 4) -> int:
    """The smallest of 1, 2, 2.5 or 5 × 10^k (an integer, at least 1) whose `ticks`
    steps reach `top`."""
    magnitude = 1
    while True:
        for mantissa in (10, 20, 25, 50):
            step = mantissa * magnitude // 10
            if step >= 1 and step * ticks >= top:
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
) -> SafeString:
    """Grouped bars: one group per label, one bar per series in each group.

    `show_values` writes each bar's value above it (for charts with few bars).
    """
    groups = len(labels)
    top = max((bar.value for s in series for bar in s.bars), default=0)
    step = nice_step(max(top, 1))
    ceiling = step * 4
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def y(value: int) -> float:
        return TOP + plot_h - plot_h * value / ceiling

    parts = [
        f'<svg class="pd-chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
        'xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for tick in range(5):
        value = step * tick
        parts.append(
            f'<line class="pd-grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(value):.1f}" y2="{y(value):.1f}"/>'
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
            height = TOP + plot_h - y(bar.value)
            parts.append(f'<a href="{escape(bar.href)}" class="{escape(s.css_class)}">')
            parts.append(f"<title>{escape(bar.title)}</title>")
            # The link target covers the whole column, so even a zero bar can be clicked.
            parts.append(
                f'<rect class="pd-hit" x="{x:.1f}" y="{TOP}" width="{bar_w:.1f}" height="{plot_h}" fill="transparent"/>'
            )
            if bar.value:
                parts.append(
                    f'<rect class="pd-bar" x="{x:.1f}" y="{y(bar.value):.1f}" width="{max(bar_w - 1, 1):.1f}" '
                    f'height="{max(height, 1):.1f}"/>'
                )
            if show_values:
                parts.append(
                    f'<text class="pd-value" x="{x + bar_w / 2:.1f}" y="{y(bar.value) - 4:.1f}" '
                    f'text-anchor="middle">{escape(show_values(bar.value))}</text>'
                )
            parts.append("</a>")
        if g % every == 0:
            parts.append(
                f'<text class="pd-axis" x="{LEFT + (g + 0.5) * group_w:.1f}" y="{HEIGHT - 8}" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every interpolated text and URL above is escaped
