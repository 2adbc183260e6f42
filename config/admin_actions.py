"""Operator actions in the admin: the confirmation page, the permission check and the
audit entry, written once for every app.

An operator action is a change staff make to money or state: a refund, a balance
adjustment, a retry. Each is an OperatorAction subclass in its app's `admin_actions.py`,
listed in its ModelAdmin's `operator_actions` (OperatorActionsMixin). For each one the
admin gets:

- an entry in the changelist's action menu and a button on the object page, shown only
  to staff holding the action's permission (one custom permission per action, e.g.
  `payments.refund_payment`);
- a confirmation page at `<changelist>/operator/<name>/?ids=<pk>,<pk>` (its own URL, as
  Django's docs advise for intermediate pages), like the delete confirmation: the
  objects, what each will undergo or why it is skipped, and a form: a reason (required
  wherever money moves or state changes) and whatever else the action needs. A form
  error shows on the page and nothing runs;
- on "Yes", the action's service for each object in turn, never a raw save. Services are
  atomic, so each object is done or untouched; one refused object (IllegalTransition,
  InsufficientFunds...) does not stop the others and is reported. With one object, a
  refusal is shown on the form instead, with the operator's input kept;
- an audit entry for each object that changed: Django's admin LogEntry (user, time,
  object) with a JSON change_message {"operator_action", "label", "reason", "result",
  "details", "token"}, shown on the object's History page, on its change page and in
  Administration > Log entries.

The menu entry, the button, the page and its POST all check the permission: anyone
else gets 403 and nothing runs (a forged changelist POST naming the action too).

The form carries a one-time token made when the page is shown: actions pass
`admin:<name>:<token>` as the service's idempotency key where it takes one (refund,
cancel, adjust), and the token is recorded, so a double submit acts once.
"""

import json
import uuid
from contextlib import nullcontext
from dataclasses import dataclass, field
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.admin.models import LogEntry
from django.contrib.admin.options import IS_POPUP_VAR
from django.contrib.admin.utils import quote
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.http import Http404, HttpResponseRedirect
from django.template.loader import select_template
from django.template.response import TemplateResponse
from django.urls import path, reverse

from config.currencies import exponent
from config.errors import DomainError
from config.money_display import money

CONFIRM_TEMPLATE = "admin/operator_actions/confirm.html"
MAX_OBJECTS = 100  # one confirmation page lists them all


def minor_units_label(what: str, currency: str, *, signed: bool = False) -> str:
    """'Amount to refund, in minor units of USD (100 = 1.00 USD)': amounts in admin forms
    are integers in minor units, as everywhere else; the label says what one is worth."""
    code = currency.upper()
    exp = exponent(code)
    if exp == 0:
        unit = f"in {code} ({code} has no minor unit: 100 = {money(100, code)})"
    else:
        unit = f"in minor units of {code} ({10**exp} = {money(10**exp, code)})"
    return f"{what}, {unit}{', signed' if signed else ''}"


def amount_widget(currency: str) -> forms.NumberInput:
    """A number input that shows the formatted value next to it as it is typed."""
    return forms.NumberInput(
        attrs={"data-currency": currency.upper(), "data-exponent": exponent(currency), "class": "operator-amount"}
    )


class OperatorActionForm(forms.Form):
    """The form of every confirmation page: a reason (kept in the audit trail) and the
    page's one-time token. Subclasses add their fields; `self.objects` holds the objects
    the action applies to, to validate against (e.g. what is left to refund)."""

    reason = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 3, "cols": 70}))
    token = forms.UUIDField(widget=forms.HiddenInput)

    def __init__(self, *args, action: "OperatorAction", objects: list, **kwargs):
        super().__init__(*args, **kwargs)
        self.action, self.objects = action, objects
        reason = self.fields["reason"]
        reason.required = action.reason_required
        reason.label = "Reason" if action.reason_required else "Note (optional)"
        reason.help_text = "Kept in the audit trail with your user name and the time."
        if action.reason_required:
            reason.help_text = "Required. " + reason.help_text
        self.order_fields([name for name in self.fields if name not in ("reason", "token")] + ["reason", "token"])


@dataclass
class Outcome:
    """What one run of an action did."""

    result: str  # for the operator and the audit trail: "Refunded 5.00 USD; ..."
    details: dict = field(default_factory=dict)  # recorded: ids, amounts, statuses
    changed: bool = True  # False: nothing happened (a replay, nothing to do): no audit entry
    level: int = messages.SUCCESS
    logged_object: object = None  # the audit entry's object, if not the one acted on
    added: bool = False  # logged_object was made by the action (an ADDITION entry)
    redirect_to: str | None = None


class OperatorAction:
    """One operator action. Subclasses set the attributes and implement perform() (or
    perform_global() when it acts on no object, like the ledger audit)."""

    name: str  # the menu key and URL segment: "refund_payment"
    label: str  # the menu entry and the object page's button: "Refund…"
    title: str  # the confirmation page's heading
    permission: str  # "payments.refund_payment"
    explanation: str = ""  # what the action does, in a paragraph on the page
    confirm_label: str = "Yes, I'm sure"
    form_class: type[OperatorActionForm] = OperatorActionForm
    reason_required: bool = True
    needs_objects: bool = True
    single: bool = False  # one object at a time (its form depends on it)
    atomic: bool = False  # the service and the audit entry in one transaction (database-only services)
    max_objects: int = MAX_OBJECTS

    _registry: list[type["OperatorAction"]] = []

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if getattr(cls, "permission", None):
            OperatorAction._registry.append(cls)

    def queryset(self, queryset):
        """The objects' queryset for the page (add select_related/prefetch_related here)."""
        return queryset

    def allowed(self, user) -> bool:
        return user.is_active and user.is_staff and user.has_perm(self.permission)

    def skip_reason(self, obj) -> str | None:
        """Why the action does not apply to obj (it is skipped), or None. The service
        decides for real, under its lock; this is for the page."""
        return None

    def state(self, obj) -> str:
        """The object as it is now, for the page's "Now" column."""
        return ""

    def describe(self, obj) -> str:
        """What will happen to obj."""
        return self.label

    def make_form(self, data=None, *, objects, initial=None) -> OperatorActionForm:
        return self.form_class(data, action=self, objects=objects, initial=initial)

    def perform(self, *, request, obj, data: dict, key: str) -> Outcome:
        raise NotImplementedError

    def perform_global(self, *, request, data: dict, key: str) -> Outcome:
        raise NotImplementedError


def operator_action_classes() -> list[type[OperatorAction]]:
    """Every operator action declared (imported) so far."""
    return list(OperatorAction._registry)


def operator_action_permissions() -> list[str]:
    """Every operator action's permission ("app.codename"): what the finance group holds."""
    return sorted({cls.permission for cls in operator_action_classes()})


# --- the audit trail ---------------------------------------------------------------------


def audit_data(entry: LogEntry) -> dict | None:
    """The operator action recorded by `entry`, or None for an ordinary admin entry."""
    message = entry.change_message or ""
    if not message.startswith("{"):
        return None
    try:
        data = json.loads(message)
    except ValueError:
        return None
    return data if isinstance(data, dict) and "operator_action" in data else None


def audit_entries(obj, *, limit: int | None = None) -> list[tuple[LogEntry, dict]]:
    """The operator actions recorded on obj, newest first: [(entry, data)]."""
    content_type = ContentType.objects.get_for_model(obj, for_concrete_model=False)
    entries = (
        LogEntry.objects.filter(content_type=content_type, object_id=str(obj.pk), change_message__startswith="{")
        .select_related("user")
        .order_by("-action_time", "-id")
    )
    found = [(entry, data) for entry in entries if (data := audit_data(entry)) is not None]
    return found[:limit] if limit else found


def _already_done(action: "OperatorAction", obj, token: str, user) -> bool:
    """Whether this page (its token) already did the action to obj. A page is submitted
    by the user it was shown to: looking among their entries keeps the search short."""
    entries = LogEntry.objects.filter(user_id=user.pk, change_message__contains=f'"token": "{token}"').filter(
        change_message__contains=f'"operator_action": "{action.name}"'
    )
    if obj is not None:
        content_type = ContentType.objects.get_for_model(obj, for_concrete_model=False)
        entries = entries.filter(content_type=content_type, object_id=str(obj.pk))
    return entries.exists()


# --- the ModelAdmin side -----------------------------------------------------------------


def _menu_entry(action: OperatorAction):
    def open_confirmation(modeladmin, request, queryset):
        return modeladmin.operator_redirect(request, action, queryset)

    open_confirmation.__name__ = action.name
    return open_confirmation


class OperatorActionsMixin:
    """Adds the `operator_actions` of a ModelAdmin to its menu, object page and URLs."""

    operator_actions: list[OperatorAction] = []
    change_form_template = "admin/operator_actions/change_form.html"

    def get_urls(self):
        name = f"{self.opts.app_label}_{self.opts.model_name}_operator"
        view = self.admin_site.admin_view(self.operator_view)
        # Before the ModelAdmin's own: "<path:object_id>/" would take "operator/<name>/".
        return [path("operator/<str:action_name>/", view, name=name), *super().get_urls()]

    def get_actions(self, request):
        actions = super().get_actions(request)
        if self.actions is None or IS_POPUP_VAR in request.GET:
            return actions
        for action in self.operator_actions:
            if action.allowed(request.user):
                actions[action.name] = (_menu_entry(action), action.name, action.label)
        return actions

    def changelist_view(self, request, extra_context=None):
        if request.method == "POST":
            for name in request.POST.getlist("action"):
                action = self._find_operator_action(name)
                if action is not None and not action.allowed(request.user):
                    return self._operator_forbidden(request, action)  # a forged POST: refused, not ignored
        return super().changelist_view(request, extra_context)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        opts = self.opts
        base = select_template(
            [
                f"admin/{opts.app_label}/{opts.model_name}/change_form.html",
                f"admin/{opts.app_label}/change_form.html",
                "admin/change_form.html",
            ]
        )
        context["operator_base_template"] = base.template.name
        if obj is not None and change:
            context["operator_buttons"] = [
                {"label": action.label, "url": self.operator_url(action, [obj])}
                for action in self.operator_actions
                if action.needs_objects and action.allowed(request.user) and action.skip_reason(obj) is None
            ]
            context["operator_entries"] = audit_entries(obj, limit=10)
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)

    # -- helpers

    def _find_operator_action(self, name) -> OperatorAction | None:
        return next((action for action in self.operator_actions if action.name == name), None)

    def operator_url(self, action: OperatorAction, objects=()) -> str:
        url = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_operator", args=[action.name])
        ids = ",".join(str(obj.pk) for obj in objects)
        return f"{url}?{urlencode({'ids': ids})}" if ids else url

    def _changelist_url(self) -> str:
        return reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist")

    def _change_url(self, obj) -> str:
        return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[quote(obj.pk)])

    def operator_redirect(self, request, action: OperatorAction, queryset):
        """The menu entry: check the selection, then open the confirmation page."""
        if not action.needs_objects:
            return HttpResponseRedirect(self.operator_url(action))
        count = queryset.count()
        if action.single and count != 1:
            self.message_user(request, f"{action.title}: select exactly one, one at a time.", messages.WARNING)
            return None
        if count > action.max_objects:
            self.message_user(
                request, f"{action.title}: select at most {action.max_objects} at a time.", messages.WARNING
            )
            return None
        return HttpResponseRedirect(self.operator_url(action, queryset.order_by("pk")))

    def _operator_objects(self, request, action: OperatorAction) -> list | None:
        raw = [part for part in request.GET.get("ids", "").split(",") if part]
        try:
            ids = [self.opts.pk.to_python(part) for part in raw]
        except ValidationError:
            return None
        found = {obj.pk: obj for obj in action.queryset(self.get_queryset(request).filter(pk__in=ids))}
        return [found[pk] for pk in dict.fromkeys(ids) if pk in found]

    def _operator_forbidden(self, request, action: OperatorAction):
        """403, in the admin's look, saying which permission is missing; nothing runs."""
        context = {
            **self.admin_site.each_context(request),
            "title": "Not allowed",
            "subtitle": None,
            "opts": self.opts,
            "action": action,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/operator_actions/forbidden.html", context, status=403)

    # -- the confirmation page

    def operator_view(self, request, action_name):
        action = self._find_operator_action(action_name)
        if action is None:
            raise Http404(f"No operator action {action_name!r} here.")
        if not self.has_view_permission(request):
            raise PermissionDenied
        if not action.allowed(request.user):
            return self._operator_forbidden(request, action)
        objects = []
        if action.needs_objects:
            objects = self._operator_objects(request, action)
            problem = None
            if not objects:
                problem = "No such objects selected (or not any more)."
            elif action.single and len(objects) != 1:
                problem = "Select exactly one, one at a time."
            elif len(objects) > action.max_objects:
                problem = f"Select at most {action.max_objects} at a time."
            if problem:
                self.message_user(request, f"{action.title}: {problem}", messages.WARNING)
                return HttpResponseRedirect(self._changelist_url())
        back = self._change_url(objects[0]) if len(objects) == 1 else self._changelist_url()
        rows = []
        for obj in objects:
            skip = action.skip_reason(obj)
            rows.append(
                {
                    "obj": obj,
                    "url": self._change_url(obj),
                    "state": action.state(obj),
                    "skip": skip,
                    "what": "" if skip else action.describe(obj),
                }
            )
        applicable = [row["obj"] for row in rows if not row["skip"]]
        nothing_to_do = action.needs_objects and not applicable

        if request.method == "POST":
            form = action.make_form(request.POST, objects=applicable)
            if nothing_to_do:
                form.is_valid()
                form.add_error(None, "The action applies to none of these: nothing to do.")
            elif form.is_valid():
                response = self._operator_run(request, action, applicable, form, back=back)
                if response is not None:
                    return response
        else:
            form = action.make_form(objects=applicable, initial={"token": uuid.uuid4()})

        context = {
            **self.admin_site.each_context(request),
            "title": action.title,
            "subtitle": None,
            "opts": self.opts,
            "action": action,
            "rows": rows,
            "single": rows[0] if len(rows) == 1 else None,
            "skipped": sum(1 for row in rows if row["skip"]),
            "nothing_to_do": nothing_to_do,
            "form": form,
            "back_url": back,
            "media": self.media + form.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, CONFIRM_TEMPLATE, context)

    def _operator_run(self, request, action: OperatorAction, objects: list, form, *, back: str):
        """Run the action on each object; None to show the form again (with its errors)."""
        data = form.cleaned_data
        token = str(data["token"])
        key = f"admin:{action.name}:{token}"
        targets = objects if action.needs_objects else [None]
        redirect_to = back
        for obj in targets:
            prefix = f"{obj}: " if obj is not None and len(targets) > 1 else ""
            if _already_done(action, obj, token, request.user):
                self.message_user(request, f"{prefix}already done from this page; nothing changed.", messages.WARNING)
                continue
            try:
                with transaction.atomic() if action.atomic else nullcontext():
                    if obj is None:
                        outcome = action.perform_global(request=request, data=data, key=key)
                    else:
                        outcome = action.perform(request=request, obj=obj, data=data, key=key)
                    if outcome.changed:
                        self._operator_log(request, action, obj, outcome, data)
            except DomainError as exc:
                if len(targets) == 1:
                    # One object: the refusal belongs on the form, with the input kept. A new
                    # token: this attempt is over (a service may have recorded it as failed).
                    form.data = form.data.copy()
                    form.data["token"] = str(uuid.uuid4())
                    form.add_error(exc.param if exc.param in form.fields else None, f"Nothing changed: {exc.message}")
                    return None
                self.message_user(request, f"{prefix}nothing changed: {exc.message}", messages.ERROR)
                continue
            self.message_user(request, f"{prefix}{outcome.result}", outcome.level)
            if outcome.redirect_to and len(targets) == 1:
                redirect_to = outcome.redirect_to
        return HttpResponseRedirect(redirect_to)

    def _operator_log(self, request, action: OperatorAction, obj, outcome: Outcome, data: dict) -> None:
        message = json.dumps(
            {
                "operator_action": action.name,
                "label": action.label.rstrip("…"),
                "reason": data.get("reason", ""),
                "result": outcome.result,
                "details": outcome.details,
                "token": str(data["token"]),
            },
            cls=DjangoJSONEncoder,
        )
        target = outcome.logged_object if outcome.logged_object is not None else obj
        if outcome.added:
            self.log_addition(request, target, message)
        else:
            self.log_change(request, target, message)


__all__ = [
    "OperatorAction",
    "OperatorActionForm",
    "OperatorActionsMixin",
    "Outcome",
    "amount_widget",
    "audit_data",
    "audit_entries",
    "minor_units_label",
    "money",
    "operator_action_classes",
    "operator_action_permissions",
]
