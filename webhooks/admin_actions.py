"""Operator actions on webhooks (config/admin_actions.py): re-process an inbound event,
resend an outbound delivery, enable or disable a merchant's endpoint."""

from django.contrib import messages

from config.admin_actions import OperatorAction, Outcome

from .models import InboundEvent
from .services import HandlerFailed, delivery_replay, endpoint_disable, endpoint_enable, inbound_event_process


class ReprocessInboundEvent(OperatorAction):
    name = "reprocess_inbound_event"
    label = "Re-process now…"
    title = "Re-process inbound events"
    permission = "webhooks.reprocess_inbound_event"
    confirm_label = "Yes, re-process"
    # Not atomic: a handler that fails again is recorded as failed by the service after
    # its own rollback; an outer transaction would roll that record back too.
    explanation = (
        "The stored event (as it was received and verified) is handed to its handler again now, whatever its "
        "status or retry schedule. Handlers are idempotent: an effect already applied, such as a payment "
        "already marked succeeded or credits already granted, is not applied twice."
    )

    def state(self, event):
        error = f"; last error: {event.last_error[:120]}" if event.status == InboundEvent.Status.FAILED else ""
        return f"{event.status.capitalize()} after {event.attempts} attempt{'s' if event.attempts != 1 else ''}{error}"

    def describe(self, event):
        return f"Run the {event.provider} {event.type} handler again."

    def perform(self, *, request, obj, data, key):
        try:
            status = inbound_event_process(event_id=obj.pk, force=True)
        except HandlerFailed as exc:
            return Outcome(
                f"Processed again and failed again: {exc}",
                details={"status": "failed", "error": str(exc)[:500]},
                level=messages.ERROR,
            )
        if status == "locked-or-missing":
            return Outcome(
                "Being processed right now by a worker; try again in a moment.",
                changed=False,
                level=messages.WARNING,
            )
        return Outcome(f"Processed again: {status}.", details={"status": status})


class ResendDelivery(OperatorAction):
    name = "resend_delivery"
    label = "Resend now…"
    title = "Resend deliveries"
    permission = "webhooks.resend_delivery"
    confirm_label = "Yes, resend"
    atomic = True  # the send is queued once the audit entry is committed with it
    explanation = (
        "Each delivery is made due now and a worker sends it again, signed, whatever its status: a delivered "
        "event may be sent again (receivers dedupe on the event id). A delivery to a disabled endpoint is "
        "queued but held until the endpoint is re-enabled; one to a deleted endpoint is not sent."
    )

    def queryset(self, queryset):
        return queryset.select_related("event", "endpoint")

    def skip_reason(self, delivery):
        if delivery.endpoint.deleted_at:
            return "the merchant deleted its endpoint; nothing is sent to it any more."
        return None

    def state(self, delivery):
        code = f", last response {delivery.last_response_code}" if delivery.last_response_code else ""
        return f"{delivery.status.capitalize()} after {delivery.attempts} attempts{code}"

    def describe(self, delivery):
        if not delivery.endpoint.enabled:
            return f"Queue event {delivery.event_id} again; held until the endpoint is re-enabled."
        return f"Send event {delivery.event_id} to {delivery.endpoint.url} again now."

    def perform(self, *, request, obj, data, key):
        delivery = delivery_replay(delivery=obj)
        if not obj.endpoint.enabled:
            return Outcome(
                "Queued, but its endpoint is disabled: re-enable it to send.",
                details={"event": obj.event_id, "status": delivery.status},
                level=messages.WARNING,
            )
        return Outcome("Queued to send now.", details={"event": obj.event_id, "status": delivery.status})


class EnableEndpoint(OperatorAction):
    name = "enable_endpoint"
    label = "Re-enable…"
    title = "Re-enable webhook endpoints"
    permission = "webhooks.toggle_endpoint"
    confirm_label = "Yes, re-enable"
    atomic = True
    explanation = (
        "The endpoint receives events again. Its failure count starts from zero, and what it missed while "
        "disabled (its kept and held deliveries) goes out with the next sweep, oldest first."
    )

    def skip_reason(self, endpoint):
        if endpoint.deleted_at:
            return "the merchant deleted it; it stays off."
        if endpoint.enabled:
            return "it is enabled already."
        return None

    def state(self, endpoint):
        return _endpoint_state(endpoint)

    def describe(self, endpoint):
        return "Re-enable it and send what it missed."

    def perform(self, *, request, obj, data, key):
        endpoint_enable(endpoint=obj)
        return Outcome("Re-enabled; what it missed goes out with the next sweep.", details={"enabled": True})


class DisableEndpoint(OperatorAction):
    name = "disable_endpoint"
    label = "Disable…"
    title = "Disable webhook endpoints"
    permission = "webhooks.toggle_endpoint"
    confirm_label = "Yes, disable"
    atomic = True
    explanation = (
        "Nothing more is sent to the endpoint. Its undelivered deliveries are kept and events from now on "
        "are held for it: all of them go out if it is re-enabled. The reason is shown on the endpoint."
    )

    def skip_reason(self, endpoint):
        if endpoint.deleted_at:
            return "the merchant deleted it (it is disabled for good)."
        if not endpoint.enabled:
            return "it is disabled already."
        return None

    def state(self, endpoint):
        return _endpoint_state(endpoint)

    def describe(self, endpoint):
        return "Disable it; hold its deliveries."

    def perform(self, *, request, obj, data, key):
        reason = f"disabled by {request.user.get_username()}: {data['reason']}"[:255]
        endpoint_disable(endpoint=obj, reason=reason)
        return Outcome("Disabled.", details={"enabled": False})


def _endpoint_state(endpoint) -> str:
    if endpoint.deleted_at:
        return "Deleted by the merchant"
    if endpoint.enabled:
        failures = endpoint.consecutive_failures
        return f"Enabled{f', {failures} failures in a row' if failures else ''}"
    return f"Disabled: {endpoint.disabled_reason or 'no reason given'}"


REPROCESS = ReprocessInboundEvent()
RESEND = ResendDelivery()
ENABLE_ENDPOINT = EnableEndpoint()
DISABLE_ENDPOINT = DisableEndpoint()
