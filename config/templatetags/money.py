"""`{% load money %}{{ payment.amount|money:payment.currency }}` → "$25.99" (config.money_display)."""

from django import template

from config.money_display import money as money_text

register = template.Library()


@register.filter
def money(amount, currency):
    return money_text(amount, currency)
