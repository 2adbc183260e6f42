"""The server-drawn SVG charts: scaled to nice round ticks, every bar a link, text escaped."""

import re

import pytest

from backoffice.charts import Bar, Series, bar_chart, compact_count, compact_money, nice_step


@pytest.mark.parametrize(
    "top, step", [(1, 1), (4, 1), (5, 2), (8, 2), (9, 5), (20, 5), (399, 100), (401, 200), (1000, 250), (16599, 5000)]
)
def test_ticks_are_round_and_reach_the_top(top, step):
    assert nice_step(top) == step and 4 * step >= top


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
