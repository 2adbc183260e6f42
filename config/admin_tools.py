"""Admin building blocks shared by every app.

- Records staff read but never edit directly (ledger entries, events, logs):
  ReadOnlyAdmin, ReadOnlyTabularInline; ActionsOnlyAdmin for records changed only
  through admin actions (payments, installment orders): their pages have no Save button.
- Columns and fields: money_column (formatted money, sortable, raw minor units in the
  tooltip), status_column (coloured badge), flag_column (a boolean as words), id_column
  (a short id, copied whole on click), text_column (long text cut, whole in the tooltip),
  related_links (links to filtered lists).
- MoneyTotalsMixin: per-currency totals of the filtered rows under a list, in one query.
- CSV export of a filtered list lives next door (config.admin_export.CsvExportMixin).

Money is formatted by config.money_display.money, the one helper for people-facing text.
"""

from collections.abc import Callable

from django.contrib import admin
from django.contrib.admin.utils import quote
from django.db.models import Count, Sum
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import mark_safe

from config.money_display import money

EMPTY = "-"  # what Django shows for an empty value


class ShowReadOnlyFieldsMixin:
    """A page made of read-only fields shows exactly `readonly_fields`, in their order:
    without `fields`, Django would also list every model field raw (2599 next to $25.99)."""

    def get_fields(self, request, obj=None):
        if self.fields is None and self.readonly_fields:
            return list(self.get_readonly_fields(request, obj))
        return super().get_fields(request, obj)


class ReadOnlyAdmin(ShowReadOnlyFieldsMixin, admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyTabularInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class ActionsOnlyAdmin(ShowReadOnlyFieldsMixin, admin.ModelAdmin):
    """A record whose every field is read-only and that changes only through actions
    (which call services): the change permission still unlocks those actions on the
    list, but the object page is a view page, with no Save button, and a POST to it is
    refused (403) rather than re-saving the row."""

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def _resolve(obj, path: str):
    """obj.a.b for "a__b"; None when a link in the chain is None."""
    for part in path.split("__"):
        if obj is None:
            return None
        obj = getattr(obj, part)
    return obj


# --- Money -----------------------------------------------------------------------------------


def money_html(amount, currency, *, raw: bool = False):
    """<span title="2599 usd (minor units)">$25.99</span>; raw=True also shows the minor
    units after it (object pages)."""
    if amount is None:
        return EMPTY
    minor = f"{amount} {(currency or '').lower()}".strip()
    if raw:
        return format_html(
            '<span class="pd-money" title="{} (minor units)">{}</span> <span class="pd-raw">{} minor units</span>',
            minor,
            money(amount, currency),
            minor,
        )
    return format_html('<span class="pd-money" title="{} (minor units)">{}</span>', minor, money(amount, currency))


def money_column(
    field: str = "amount", *, currency: str = "currency", description: str | None = None, raw: bool = False
) -> Callable:
    """A list_display / readonly_fields entry showing `field` (minor units) as money in
    the row's currency (`currency` is a field path such as "payment__currency"), sorted
    by the amount. raw=True (object pages) also prints the minor units."""

    @admin.display(description=description or field.split("__")[-1].replace("_", " "), ordering=field)
    def column(obj):
        return money_html(_resolve(obj, field), _resolve(obj, currency), raw=raw)

    column.__name__ = f"{field}_money"
    return column


# --- Badges and words ------------------------------------------------------------------------

TONES = {
    "green": {"succeeded", "paid", "delivered", "active", "ok", "captured", "posted", "processed", "completed"},
    "blue": {"pending", "scheduled", "processing", "in_flight", "received", "open", "collecting"},
    "amber": {"retrying", "held", "partially_refunded", "suspended", "attention", "ignored"},
    "red": {"failed", "defaulted", "dead", "error", "mismatch", "disputed"},
    "violet": {"refunded"},
    "grey": {"canceled", "cancelled", "expired", "voided", "void", "revoked", "closed", "deleted", "done"},
}
TONE_OF = {value: tone for tone, values in TONES.items() for value in values}


def badge(label, *, value: str | None = None, tone: str | None = None, title: str = ""):
    """A coloured pill; the tone follows the status value unless given."""
    if label in (None, ""):
        return EMPTY
    tone = tone or TONE_OF.get(str(value if value is not None else label).lower(), "grey")
    if title:
        return format_html('<span class="pd-badge pd-{}" title="{}">{}</span>', tone, title, label)
    return format_html('<span class="pd-badge pd-{}">{}</span>', tone, label)


def status_column(field: str = "status", *, description: str | None = None) -> Callable:
    """The status as a coloured badge (its choice label), sorted by the value."""

    @admin.display(description=description or field.replace("_", " "), ordering=field)
    def column(obj):
        value = getattr(obj, field)
        display = getattr(obj, f"get_{field}_display", None)
        return badge(display() if display else value, value=value)

    column.__name__ = f"{field}_badge"
    return column


def flag_column(
    field: str,
    *,
    yes: str,
    no: str = "",
    yes_tone: str = "red",
    no_tone: str = "grey",
    description: str | None = None,
) -> Callable:
    """A boolean as words ("flagged" / nothing, "live" / "test"), never a red cross
    for a good "no"."""

    @admin.display(description=description or field.replace("_", " "), ordering=field)
    def column(obj):
        value = getattr(obj, field)
        if value is None:
            return EMPTY
        if value:
            return badge(yes, tone=yes_tone)
        return badge(no, tone=no_tone) if no else ""

    column.__name__ = f"{field}_words"
    return column


def titled_filter(title: str, base: type = admin.ChoicesFieldListFilter) -> type:
    """A field list filter under its own title: ("account__kind", titled_filter("account
    kind")) when two filters would both read "By kind"."""

    class TitledFilter(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.title = title

    TitledFilter.__name__ = f"Titled{base.__name__}"
    return TitledFilter


def words_filter(field: str, *, title: str, yes: str, no: str) -> type[admin.SimpleListFilter]:
    """A list filter on a boolean whose choices read as words ("Flagged" / "Not flagged")."""

    class WordsFilter(admin.SimpleListFilter):
        parameter_name = field

        def lookups(self, request, model_admin):
            return [("1", yes), ("0", no)]

        def queryset(self, request, queryset):
            if self.value() in ("0", "1"):
                return queryset.filter(**{field: self.value() == "1"})
            return queryset

    WordsFilter.title = title
    WordsFilter.__name__ = f"{field.title().replace('_', '')}WordsFilter"
    return WordsFilter


# --- Ids and links -----------------------------------------------------------------------------


# Two overlapping sheets, drawn: no font is needed for it.
COPY_ICON = mark_safe(
    '<svg width="11" height="11" viewBox="0 0 16 16" aria-hidden="true" fill="none" stroke="currentColor" '
    'stroke-width="1.6"><rect x="5" y="5" width="9" height="9" rx="1.5"/>'
    '<path d="M11 5V3.5A1.5 1.5 0 0 0 9.5 2h-6A1.5 1.5 0 0 0 2 3.5v6A1.5 1.5 0 0 0 3.5 11H5"/></svg>'
)


def short_id(value, *, length: int = 8):
    """The first characters of an id, the whole id in the tooltip, and a copy button
    that puts the whole id on the clipboard (admin.js)."""
    if value in (None, ""):
        return EMPTY
    full = str(value)
    shown = full if len(full) <= length + 1 else full[:length] + "…"
    return format_html(
        '<span class="pd-id" title="{}"><code>{}</code><button type="button" class="pd-copy" data-copy="{}" '
        'title="Copy {}" aria-label="Copy the whole id">{}</button></span>',
        full,
        shown,
        full,
        full,
        COPY_ICON,
    )


def truncated(value, *, length: int = 24):
    """Long text cut to `length` characters with "…", the whole text in the tooltip."""
    if value in (None, ""):
        return EMPTY if value is None else ""
    text = str(value)
    if len(text) <= length:
        return text
    return format_html('<span title="{}">{}…</span>', text, text[: length - 1])


def text_column(field: str, *, length: int = 24, description: str | None = None) -> Callable:
    """A text column that keeps a list within 1400 px: long values are cut (tooltip: all)."""

    @admin.display(description=description or field.split("__")[-1].replace("_", " "), ordering=field)
    def column(obj):
        return truncated(_resolve(obj, field), length=length)

    column.__name__ = field.replace("__", "_")
    return column


def id_column(field: str = "id", *, description: str = "id") -> Callable:
    @admin.display(description=description, ordering=field)
    def column(obj):
        return short_id(_resolve(obj, field))

    column.__name__ = f"{field.replace('__', '_')}_short"
    return column


def admin_url(model_or_obj, view: str = "changelist", *args) -> str | None:
    """The admin URL of a model's list ("changelist") or an object's page ("change");
    None when that model has no admin. Names only, no import of the model's app."""
    meta = model_or_obj._meta
    name = f"admin:{meta.app_label}_{meta.model_name}_{view}"
    try:
        return reverse(name, args=args or ((quote(model_or_obj.pk),) if view == "change" else ()))
    except NoReverseMatch:
        return None


def list_url(label: str, **params) -> str | None:
    """The admin list of "app_label.model_name", filtered by `params` (lookups)."""
    app_label, model_name = label.lower().split(".")
    try:
        url = reverse(f"admin:{app_label}_{model_name}_changelist")
    except NoReverseMatch:
        return None
    return f"{url}?{urlencode(params)}" if params else url


def obj_link(obj, text=None):
    """A link to the object's admin page (its text: str(obj) unless given)."""
    if obj is None:
        return EMPTY
    url = admin_url(obj, "change")
    return format_html('<a href="{}">{}</a>', url, text or obj) if url else (text or str(obj))


def related_links(links: list[tuple[str, str | None, int | None]]):
    """An object page's "related" field: [(label, url, count or None)] as a list of links."""
    items = [(url, label, f" ({count})" if count is not None else "") for label, url, count in links if url]
    if not items:
        return EMPTY
    return format_html('<ul class="pd-related">{}</ul>', format_html_join("", '<li><a href="{}">{}{}</a></li>', items))


# --- Totals ------------------------------------------------------------------------------------


class MoneyTotalsMixin:
    """Totals per currency of the filtered rows (all pages, not just the one shown),
    under the list: SUM(field) ... GROUP BY currency, one query. `money_totals` names the
    amount fields to add up (a field, or (field, label)); `money_totals_currency` is the
    currency's path ("currency", "payment__currency").

    The filtered rows are taken as a subquery of their ids: a filter that joins (and so
    uses DISTINCT) would otherwise count a row once per joined match."""

    money_totals: tuple = ("amount",)
    money_totals_currency: str = "currency"

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if context and "cl" in context and self.money_totals:
            context["money_totals"] = self.money_totals_rows(context["cl"].queryset)
        return response

    def _money_totals_fields(self) -> list[tuple[str, str]]:
        fields = []
        for entry in self.money_totals:
            field, label = entry if isinstance(entry, tuple | list) else (entry, None)
            fields.append((field, label or str(self.model._meta.get_field(field).verbose_name)))
        return fields

    def money_totals_rows(self, queryset) -> list[dict]:
        fields = self._money_totals_fields()
        currency_path = self.money_totals_currency
        rows = (
            self.model._default_manager.filter(pk__in=queryset.order_by().values("pk"))
            .order_by()
            .values(currency_path)
            .annotate(_rows=Count("pk"), **{f"_sum_{field}": Sum(field) for field, _ in fields})
            .order_by(currency_path)
        )
        return [
            {
                "currency": (row[currency_path] or "").upper(),
                "rows": row["_rows"],
                "sums": [
                    {"label": label, "value": money_html(row[f"_sum_{field}"] or 0, row[currency_path])}
                    for field, label in fields
                ],
            }
            for row in rows
        ]
