"""The server-drawn SVG charts: scaled to nice round ticks, every bar a link, text escaped."""

import re

import pytest

from backoffice.charts import Bar, Series, bar_chart, compact_count, compact_money, hbar_chart, nice_step


@pytest.mark.parametrize(
    "top, step", [(1, 1), (5, 1), (6, 2), (9, 2), (11, 5), (218, 50), (399, 100), (1000, 200), (16599, 5000)]
)
def test_ticks_are_round_and_reach_the_top_in_at_most_five_steps(top, step):
    assert nice_step(top) == step and 5 * step >= top


@pytest.mark.parametrize(
    "value, label", [(0, "0"), (999, "999"), (2500, "2.5k"), (25000, "25k"), (1200000, "1.2M"), (150000000, "150M")]
)
def test_compact_counts(value, label):
    assert compact_count(value) == label


def test_money_axes_in_major_units():
    usd, jpy = compact_money("usd"), compact_money("jpy")
    assert [usd(v) for v in (0, 50, 250000, 1250000)] == ["$0", "$0.50", "$2.5k", "$12.5k"]
    assert [jpy(v) for v in (0, 2500, 3000000)] == ["¥0", "¥2.5k", "¥3M"]


def chart(values, **kwargs):
    bars = [Bar(v, f"/admin/x/?day={i}&a=<b>", f"day {i}: {v}") for i, v in enumerate(values)]
    return bar_chart(
        labels=[f"d{i}" for i in range(len(values))], series=[Series("S", "pd-s", bars)], title="T", **kwargs
    )


def test_every_bar_is_a_link_with_a_tooltip_even_at_zero():
    svg = chart([0, 5, 10])
    assert svg.count("<a href=") == 3
    assert svg.count('class="pd-bar"') == 2  # nothing drawn for zero, but its column is still clickable
    assert "<title>day 0: 0</title>" in svg


def test_bar_heights_are_in_proportion():
    svg = chart([5, 10])
    heights = [float(h) for h in re.findall(r'class="pd-bar"[^>]*height="([\d.]+)"', svg)]
    assert heights[1] == pytest.approx(2 * heights[0], rel=0.02)


def test_text_and_urls_are_escaped():
    svg = chart([1], show_values=lambda v: f"<{v}>")
    assert "<b>" not in svg and "&lt;b&gt;" in svg and "&amp;a=" in svg and "&lt;1&gt;" in svg


def test_x_labels_thin_out_on_long_ranges():
    svg = chart(list(range(90)))
    assert len(re.findall(r">d\d+</text>", svg)) <= 10


def test_horizontal_bars_scale_to_the_largest_and_link_each_category():
    svg = hbar_chart(
        bars=[("Succeeded", Bar(200, "/s", "s")), ("Failed", Bar(50, "/f", "f")), ("Expired", Bar(0, "/e", "e"))],
        css_class="pd-status",
        title="T",
        value_label=str,
    )
    widths = [float(w) for w in re.findall(r'class="pd-bar"[^>]*width="([\d.]+)"', svg)]
    assert len(widths) == 2 and widths[0] == pytest.approx(4 * widths[1], rel=0.02)
    assert [h for h in re.findall(r'href="([^"]+)"', svg)] == ["/s", "/f", "/e"]
