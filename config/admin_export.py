"""CSV export of any filtered admin list: an "Export CSV" button on the list exports
exactly the rows the list's filters, search and date drill-down select (every page).

- Up to CSV_EXPORT_STREAM_MAX_ROWS rows: streamed to the browser as it is read
  (StreamingHttpResponse over QuerySet.iterator()), so memory stays flat.
- More: written by a Celery task (in-process in the embedded default) through Django's
  default storage (FILE_STORAGE_DIR, or S3-compatible with django-storages), and offered
  as a download link on a page that waits for it. A long export then never holds a web
  worker past its timeout, and the file can be fetched again.

Columns are the model's own fields (foreign keys as ids) unless the admin names them
(`csv_fields`, paths such as "merchant__name" allowed); each amount in `csv_money`
({"amount": "currency"}) is followed by an exact decimal column, "amount_decimal"
(25.99 for 2599 usd, 2599 for 2599 jpy). Fields whose name says secret, hash or token
are never exported by default. Text that a spreadsheet would run as a formula is
prefixed with a quote (OWASP CSV injection).
"""

import csv
import io
import json
import os
import tempfile
import uuid
from datetime import date, datetime
from decimal import Decimal

from django.conf import settings
from django.contrib import messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest, HttpResponseRedirect, QueryDict, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from config.money_display import major_units

EXPORT_DIR = "exports"
SENSITIVE = ("secret", "hash", "token", "password")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class _Echo:
    """csv.writer's file: hands each line back instead of storing it."""

    def write(self, value):
        return value


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), default=str)
    if isinstance(value, str):
        return "'" + value if value.startswith(FORMULA_START) else value
    return value


class CsvExportMixin:
    """Adds /<list>/export/ and the "Export CSV" button (templates/admin/change_list.html)."""

    csv_fields: list[str] | None = None
    csv_money: dict[str, str] = {}

    # --- what goes in a row ---

    def get_csv_fields(self) -> list[str]:
        if self.csv_fields is not None:
            return list(self.csv_fields)
        return [f.name for f in self.model._meta.concrete_fields if not any(word in f.name for word in SENSITIVE)]

    def csv_header(self) -> list[str]:
        header = []
        for name in self.get_csv_fields():
            header.append(name if "__" in name else self.model._meta.get_field(name).attname)
            if name in self.csv_money:
                header.append(f"{name}_decimal")
        return header

    def _getter(self, name: str):
        if "__" not in name:
            field = self.model._meta.get_field(name)
            attname = field.attname  # a foreign key: its id, no query
            return lambda obj: getattr(obj, attname)

        def get(obj):
            for part in name.split("__"):
                obj = getattr(obj, part, None) if obj is not None else None
            return obj

        return get

    def csv_rows(self, queryset, *, chunk_size: int = 2000):
        """The header, then one list per row, reading `queryset` in chunks (a server-side
        cursor on PostgreSQL): memory stays flat whatever the number of rows."""
        names = self.get_csv_fields()
        getters = [(self._getter(n), self.csv_money.get(n)) for n in names]
        currency_getters = {c: self._getter(c) for c in set(self.csv_money.values())}
        # Paths through relations ("merchant__name") are joined in, never a query per row.
        related = {n.rsplit("__", 1)[0] for n in [*names, *currency_getters] if "__" in n}
        if related:
            queryset = queryset.select_related(*sorted(related))
        yield self.csv_header()
        for obj in queryset.iterator(chunk_size=chunk_size):
            row = []
            for get, currency_field in getters:
                value = get(obj)
                row.append(_cell(value))
                if currency_field:
                    currency = currency_getters[currency_field](obj)
                    row.append(Decimal(major_units(value, currency)) if value is not None and currency else "")
            yield row

    # --- the views ---

    def _admin_url_name(self, view: str) -> str:
        return f"{self.model._meta.app_label}_{self.model._meta.model_name}_{view}"

    def get_urls(self):
        return [
            path("export/", self.admin_site.admin_view(self.csv_export_view), name=self._admin_url_name("export")),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        url = reverse(f"{self.admin_site.name}:{self._admin_url_name('export')}")
        return super().changelist_view(request, {**(extra_context or {}), "csv_export_url": url})

    def csv_filename(self) -> str:
        return f"{self.model._meta.model_name}s-{timezone.now():%Y%m%d-%H%M%S}.csv"

    def csv_export_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            return HttpResponseRedirect(
                reverse(f"{self.admin_site.name}:{self._admin_url_name('changelist')}") + "?e=1"
            )
        queryset = changelist.queryset
        rows = changelist.result_count
        filename = self.csv_filename()
        if rows <= settings.CSV_EXPORT_STREAM_MAX_ROWS:
            writer = csv.writer(_Echo())
            response = StreamingHttpResponse(
                (writer.writerow(row) for row in self.csv_rows(queryset)), content_type="text/csv; charset=utf-8"
            )
            response["Content-Disposition"] = f'attachment; filename="{filename}"'
            return response
        name = f"{EXPORT_DIR}/{request.user.pk}/{uuid.uuid4().hex}/{filename}"
        from config.tasks import csv_export_task

        try:
            csv_export_task.delay(
                admin_label=self.model._meta.label, query=request.GET.urlencode(), user_id=request.user.pk, name=name
            )
        except Exception as exc:  # the broker is down: say so, rather than a 500
            messages.error(request, f"The export could not be started ({type(exc).__name__}); try again shortly.")
            return HttpResponseRedirect(
                reverse(f"{self.admin_site.name}:{self._admin_url_name('changelist')}") + "?" + request.GET.urlencode()
            )
        messages.info(request, f"{rows} rows: more than a browser download, so the file is written to storage.")
        return HttpResponseRedirect(reverse(f"{self.admin_site.name}:csv_export_file", args=[name]))


# --- Large exports: written through the storage API -----------------------------------------------


def _manifest(name: str) -> str:
    return name + ".json"


def csv_export_to_storage(*, admin_label: str, query: str, user_id, name: str, site=None) -> dict:
    """Write the export of admin list `admin_label` filtered by `query` (the list's query
    string) as `user_id` sees it to default storage under `name`, then its manifest
    (rows, bytes, finished_at; or the error) beside it: the manifest is the sign the
    file is complete. Idempotent: a finished export is not written twice."""
    from django.apps import apps
    from django.contrib import admin
    from django.contrib.auth import get_user_model

    existing = _read_manifest(name)
    if existing is not None:
        return existing
    model_admin = (site or admin.site)._registry[apps.get_model(admin_label)]
    request = HttpRequest()
    request.method = "GET"
    request.GET = QueryDict(query)
    request.META = {"QUERY_STRING": query, "SERVER_NAME": "export", "SERVER_PORT": "80"}
    request.user = get_user_model()._default_manager.get(pk=user_id)
    try:
        if not model_admin.has_view_permission(request):
            raise PermissionDenied(f"{request.user} may not view {admin_label}")
        queryset = model_admin.get_changelist_instance(request).queryset
        # A local temporary file first, so that any storage (S3 too) gets it in one save.
        with tempfile.TemporaryFile() as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            writer = csv.writer(text)
            rows = -1  # the header
            for row in model_admin.csv_rows(queryset):
                writer.writerow(row)
                rows += 1
            text.flush()
            text.detach()
            size = raw.tell()
            raw.seek(0)
            saved = default_storage.save(name, File(raw, name=os.path.basename(name)))
        manifest = {"name": saved, "rows": rows, "bytes": size, "finished_at": timezone.now().isoformat()}
    except Exception as exc:
        _write_manifest(name, {"error": f"{type(exc).__name__}: {exc}"[:500]})
        raise
    _write_manifest(name, manifest)
    return manifest


def _read_manifest(name: str) -> dict | None:
    if not default_storage.exists(_manifest(name)):
        return None
    with default_storage.open(_manifest(name)) as fh:
        return json.load(fh)


def _write_manifest(name: str, manifest: dict) -> None:
    default_storage.save(_manifest(name), ContentFile(json.dumps(manifest).encode()))


def csv_export_file_view(request, name: str, *, site):
    """The page of a large export: a download link once its manifest is written, a
    page that reloads itself until then; ?download=1 sends the file. Staff see only
    their own exports (the path names the user), superusers all."""
    parts = name.split("/")
    if len(parts) != 4 or parts[0] != EXPORT_DIR or ".." in parts or not parts[-1].endswith(".csv"):
        raise Http404
    if parts[1] != str(request.user.pk) and not request.user.is_superuser:
        raise PermissionDenied
    manifest = _read_manifest(name)
    if request.GET.get("download"):
        if not manifest or "error" in manifest:
            raise Http404("This export is not ready.")
        stored = manifest["name"]
        try:
            default_storage.path(stored)
        except NotImplementedError:  # remote storage (S3): its own, signed, URL
            return HttpResponseRedirect(default_storage.url(stored))
        return FileResponse(default_storage.open(stored, "rb"), as_attachment=True, filename=parts[-1])
    context = {
        **site.each_context(request),
        "title": "CSV export",
        "name": name,
        "filename": parts[-1],
        "manifest": manifest,
    }
    return TemplateResponse(request, "admin/paydesk/csv_export.html", context)
