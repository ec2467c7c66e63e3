"""The SMTP settings page's tools: "Test connection", "Send test email" and their status.

Both buttons POST (CSRF-checked, staff with ``smtp_settings.change_adminconfig`` only,
``SMTP_TEST_RATE`` per user, default 10/m), create an ``SmtpTestRun`` and queue a Celery
task; they answer at once with the run's id and a status URL that the page's script polls.
The page never waits on an SMTP server.

"Test connection" probes the values on screen, saved or not, validated by the settings form
itself. A typed password travels to the worker only as a Fernet token; a blank one means
"the stored password", which is allowed only for the server, port and username it was
saved with (the worker checks again). "Send test email" sends through the saved routes as
app mail goes. Nothing here renders, returns or logs the password.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from celery import Task
from django import forms
from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_ratelimit.core import is_ratelimited
from kombu.exceptions import OperationalError

from smtp_settings import crypto, tasks
from smtp_settings.forms import AdminConfigForm, SingleLineEmailField
from smtp_settings.models import AdminConfig, SmtpTestRun
from smtp_settings.presets import PRESETS, presets_json
from smtp_settings.probe import STEPS
from smtp_settings.snapshot import ROUTE_FIELDS

logger = logging.getLogger(__name__)

RATE_GROUP = "smtp_settings.test"
RECIPIENT_FIELD = "smtp_test_recipient"
# A run still pending after this long most likely has no worker to run it.
PENDING_TOO_LONG = timedelta(seconds=30)
RUN_RETENTION = timedelta(days=30)
# Publishing to the broker must not hang the request: a few quick tries, then give up.
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
# Keys of a stored result the page may show; anything else is dropped, not risked.
SHOWN_KEYS = (
    "kind",
    "ok",
    "delivered",
    "route",
    "intended_route",
    "server",
    "security",
    "sender",
    "recipient",
    "message_id",
    "step",
    "error",
    "smtp_code",
    "smtp_text",
    "hint",
    "timings",
    "elapsed",
    "checked_at",
)
STEP_ORDER = (*STEPS, "send")
NO_PERMISSION = "Only staff allowed to change the SMTP settings may run these tests."
TOO_MANY = "Too many tests: at most {rate} per user. Wait a minute and try again."
NO_SERVER = "Enter the server to test."
NO_RECIPIENT = "Enter a recipient: your account has no email address."
QUEUE_DOWN = (
    "The task queue (Celery broker) is unreachable, so the test could not start. Check "
    "CELERY_BROKER_URL and that Redis and a worker are running."
)


class ConnectionTestForm(AdminConfigForm):
    """The settings form, validated exactly as for a save but never saved."""

    def _refuse_stale_page(self, loaded_version: int | None) -> None:
        """A test changes nothing, so a page opened before someone else's save may still
        test what it shows."""


class RecipientForm(forms.Form):
    smtp_test_recipient = SingleLineEmailField(required=False, max_length=254)


# -- the endpoints -------------------------------------------------------------------------------
@require_POST
def test_connection(request: HttpRequest, model_admin: Any) -> HttpResponse:
    refused = _refuse(model_admin, request)
    if refused:
        return refused
    saved = AdminConfig.get_solo()
    form = ConnectionTestForm(request.POST, instance=AdminConfig.get_solo())
    recipient = RecipientForm(request.POST)
    if not (form.is_valid() & recipient.is_valid()):
        return _invalid({**form.errors, **recipient.errors})
    values = {name: form.cleaned_data.get(name) for name in ROUTE_FIELDS}
    if not values["smtp_server"]:
        return _invalid({"smtp_server": [NO_SERVER]})
    typed = form.cleaned_data.get("new_password") or ""
    use_stored = bool(values["smtp_username"]) and not typed
    if use_stored:
        refusal = tasks.stored_password_refusal(saved, values)
        if refusal:
            return _invalid({"new_password": [refusal]})
    for_saved = not typed and _same_as_saved(values, saved)
    run = _start_run(request, SmtpTestRun.Kind.CONNECTION, saved if for_saved else None)
    _enqueue(
        tasks.test_smtp_connection,
        run,
        run_id=str(run.pk),
        values=values,
        # Encrypted here, decrypted in the worker that connects: never plaintext in Redis.
        password_token=crypto.encrypt(typed) if typed else "",
        use_stored_password=use_stored,
        recipient=recipient.cleaned_data[RECIPIENT_FIELD] or "",
    )
    return _accepted(model_admin, run)


@require_POST
def send_test_email(request: HttpRequest, model_admin: Any) -> HttpResponse:
    refused = _refuse(model_admin, request)
    if refused:
        return refused
    form = RecipientForm(request.POST)
    if form.is_valid() and not form.cleaned_data[RECIPIENT_FIELD]:
        # The admin's own address, validated like a typed one.
        form = RecipientForm({RECIPIENT_FIELD: request.user.email})
    if not form.is_valid():
        return _invalid(form.errors)
    if not form.cleaned_data[RECIPIENT_FIELD]:
        return _invalid({RECIPIENT_FIELD: [NO_RECIPIENT]})
    run = _start_run(request, SmtpTestRun.Kind.EMAIL, AdminConfig.get_solo())
    _enqueue(
        tasks.send_test_email,
        run,
        run_id=str(run.pk),
        recipient=form.cleaned_data[RECIPIENT_FIELD],
    )
    return _accepted(model_admin, run)


@require_GET
def test_run_status(request: HttpRequest, model_admin: Any, run_id: Any) -> HttpResponse:
    if not model_admin.has_change_permission(request):
        return JsonResponse({"error": NO_PERMISSION}, status=403)
    run = SmtpTestRun.objects.filter(pk=run_id).first()
    if run is None:
        return JsonResponse({"error": "No such test."}, status=404)
    return JsonResponse(run_payload(run, status_url=request.path))


# -- what the page shows -------------------------------------------------------------------------
def shown_result(result: dict[str, Any] | None) -> dict[str, Any]:
    if not isinstance(result, dict):
        return {}
    return {key: result[key] for key in SHOWN_KEYS if key in result}


def describe(status: str, result: dict[str, Any], *, pending_for: timedelta | None = None) -> str:
    """The one sentence the page shows for a run (or for the row's last test)."""
    if status == SmtpTestRun.Status.PENDING:
        if pending_for is not None and pending_for > PENDING_TOO_LONG:
            return (
                f"Still waiting after {int(pending_for.total_seconds())} s: is a Celery "
                "worker running?"
            )
        return "Testing… (the page updates by itself)"
    where = f"{result.get('route') or 'route'} ({result.get('server') or '?'})"
    if result.get("ok"):
        if result.get("kind") == "email":
            return f"Test email sent to {result.get('recipient')} through {where}."
        return (
            f"Connection OK: {where} would accept mail from {result.get('sender')} "
            f"to {result.get('recipient')}. Nothing was sent."
        )
    if result.get("delivered"):
        return f"Test email delivered to {result.get('recipient')}, but through {where}."
    code = f" ({result['smtp_code']})" if result.get("smtp_code") else ""
    step = result.get("step") or "send"
    return f"Failed at the {step} step{code}: {where}."


def timings_text(result: dict[str, Any]) -> str:
    """Steps in the order they happen (PostgreSQL's jsonb does not keep key order)."""
    timings = result.get("timings") or {}
    order = {step: position for position, step in enumerate(STEP_ORDER)}
    names = sorted(timings, key=lambda name: order.get(name, len(order)))
    return " · ".join(f"{name} {float(timings[name]):.3f} s" for name in names)


def run_payload(run: SmtpTestRun, *, status_url: str) -> dict[str, Any]:
    result = shown_result(run.result)
    pending_for = timezone.now() - run.created_at if run.status == run.Status.PENDING else None
    return {
        "id": str(run.pk),
        "kind": run.kind,
        "status": run.status,
        "for_saved_settings": run.for_saved_settings,
        "created_at": run.created_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "summary": describe(run.status, result, pending_for=pending_for),
        "hint": result.get("hint", ""),
        "timings": timings_text(result),
        "result": result,
        "status_url": status_url,
    }


def tools_context(model_admin: Any, request: HttpRequest) -> dict[str, Any]:
    """What templates/admin/smtp_settings/adminconfig/smtp_tools.html renders."""
    if not model_admin.has_change_permission(request):
        return {}
    last = (
        AdminConfig.objects.filter(pk=1).values("smtp_last_tested_at", "smtp_test_result").first()
        or {}
    )
    result = shown_result(last.get("smtp_test_result"))
    return {
        "test_connection_url": reverse(_url_name(model_admin, "test_connection")),
        "send_test_email_url": reverse(_url_name(model_admin, "send_test_email")),
        "default_recipient": request.user.email,
        "presets": [(key, preset.label) for key, preset in PRESETS.items()],
        "presets_json": presets_json(),
        "last_tested_at": last.get("smtp_last_tested_at"),
        "last_ok": bool(result.get("ok")),
        "last_summary": describe("done", result) if result else "",
        "last_hint": result.get("hint", ""),
        "last_timings": timings_text(result),
    }


# -- wiring --------------------------------------------------------------------------------------
class SmtpToolsAdminMixin:
    """Adds the tools' URLs and template context to the AdminConfig ModelAdmin."""

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view  # staff only: others are sent to the login page
        tools = [
            path(
                "test-connection/",
                wrap(self.smtp_test_connection_view),
                name=_url_name(self, "test_connection", namespaced=False),
            ),
            path(
                "send-test-email/",
                wrap(self.smtp_send_test_email_view),
                name=_url_name(self, "send_test_email", namespaced=False),
            ),
            path(
                "test-runs/<uuid:run_id>/",
                wrap(self.smtp_test_run_view),
                name=_url_name(self, "test_run", namespaced=False),
            ),
        ]
        return tools + super().get_urls()

    def smtp_test_connection_view(self, request: HttpRequest) -> HttpResponse:
        return test_connection(request, self)

    def smtp_send_test_email_view(self, request: HttpRequest) -> HttpResponse:
        return send_test_email(request, self)

    def smtp_test_run_view(self, request: HttpRequest, run_id: Any) -> HttpResponse:
        return test_run_status(request, self, run_id)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        extra_context = {**(extra_context or {}), "smtp_tools": tools_context(self, request)}
        return super().change_view(request, object_id, form_url, extra_context)


# -- helpers -------------------------------------------------------------------------------------
def _url_name(model_admin: Any, action: str, *, namespaced: bool = True) -> str:
    opts = model_admin.model._meta
    name = f"{opts.app_label}_{opts.model_name}_{action}"
    return f"{model_admin.admin_site.name}:{name}" if namespaced else name


def _refuse(model_admin: Any, request: HttpRequest) -> JsonResponse | None:
    if not model_admin.has_change_permission(request):
        return JsonResponse({"error": NO_PERMISSION}, status=403)
    if is_ratelimited(
        request,
        group=RATE_GROUP,
        key="user",
        rate=_rate,
        method="POST",
        increment=True,
    ):
        return JsonResponse({"error": TOO_MANY.format(rate=settings.SMTP_TEST_RATE)}, status=429)
    return None


def _rate(group: str, request: HttpRequest) -> str:
    return settings.SMTP_TEST_RATE  # read per request, so a settings change applies at once


def _invalid(errors: dict[str, Any]) -> JsonResponse:
    return JsonResponse(
        {
            "errors": {
                name: [str(message) for message in messages] for name, messages in errors.items()
            }
        },
        status=400,
    )


def _same_as_saved(values: dict[str, Any], saved: AdminConfig) -> bool:
    for name, value in values.items():
        old = getattr(saved, name)
        same = tasks.same_host(value or "", old) if name == "smtp_server" else value == old
        if not same:
            return False
    return True


def _start_run(request: HttpRequest, kind: str, saved: AdminConfig | None) -> SmtpTestRun:
    # Old runs are only history nobody polls any more; at most SMTP_TEST_RATE per user are
    # made, so pruning here (one indexed delete) keeps the table small without a beat task.
    SmtpTestRun.objects.filter(created_at__lt=timezone.now() - RUN_RETENTION).delete()
    return SmtpTestRun.objects.create(
        kind=kind,
        requested_by=request.user,
        for_saved_settings=saved is not None,
        config_version=saved.version if saved is not None else None,
    )


def _enqueue(task: Task, run: SmtpTestRun, **kwargs: Any) -> None:
    """Queue ``task`` once the run is committed (the worker must find it)."""

    def publish() -> None:
        try:
            task.apply_async(kwargs=kwargs, retry=True, retry_policy=PUBLISH_RETRY)
        except (OperationalError, OSError) as exc:
            logger.error("smtp test %s not queued: %s", run.pk, exc.__class__.__name__)
            SmtpTestRun.finish(
                run.pk,
                {"kind": run.kind, "ok": False, "step": "", "hint": QUEUE_DOWN},
                record_on_config=False,
            )

    transaction.on_commit(publish)


def _accepted(model_admin: Any, run: SmtpTestRun) -> JsonResponse:
    run.refresh_from_db()  # a queue failure (or an eager task) may have finished it already
    url = reverse(_url_name(model_admin, "test_run"), kwargs={"run_id": run.pk})
    return JsonResponse(run_payload(run, status_url=url), status=202)
