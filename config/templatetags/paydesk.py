"""Template filters for pages shown to people: `{% load paydesk %}{{ payment.amount|money:payment.currency }}`."""

from django import template

from config.money_display import money as money_text

register = template.Library()


@register.filter
def money(amount, currency):
    """2599|money:"eur" -> "€25.99" (config.money_display.money)."""
    return money_text(amount, currency)
