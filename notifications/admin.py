"""Admin for the delivery log: a searchable list, a read-only detail with its attempts, and
two actions on deferred messages ("retry now", "cancel").

Rows are written by the send path and the retry worker only, so nothing here edits a field.
The raw MIME of a deferred message is never shown (it may hold a password-reset link or
other private content); only its size is.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.db.models.functions import Length
from django.http import HttpRequest

from notifications import deferral
from notifications.models import Delivery, DeliveryAttempt

ATTEMPT_FIELDS = ("number", "started_at", "outcome", "route", "server", "smtp_code", "error")
DELIVERY_FIELDS = (
    "message_id",
    "status",
    "subject",
    "sender",
    "recipients",
    "route",
    "server",
    "attempts",
    "next_attempt_at",
    "lease_expires_at",
    "last_smtp_code",
    "last_error",
    "stored_message",
    "created_at",
    "updated_at",
    "finished_at",
)


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    fields = ATTEMPT_FIELDS
    readonly_fields = ATTEMPT_FIELDS
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "status",
        "subject",
        "recipient_summary",
        "route",
        "attempts",
        "next_attempt_at",
        "last_smtp_code",
        "message_id",
    )
    list_filter = ("status", "route", ("created_at", admin.DateFieldListFilter))
    search_fields = ("recipients", "message_id")
    date_hierarchy = "created_at"
    fields = DELIVERY_FIELDS
    readonly_fields = DELIVERY_FIELDS
    inlines = (DeliveryAttemptInline,)
    actions = ("retry_now", "cancel")
    list_per_page = 100
    show_full_result_count = False  # a count(*) over a large log on every page is slow

    def get_queryset(self, request: HttpRequest) -> QuerySet[Delivery]:
        # The list never needs the stored MIME; don't load megabytes of attachments.
        return super().get_queryset(request).defer("raw_message")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Delivery | None = None) -> bool:
        # The list (obj None) needs it for the actions; a row itself is never edited.
        return obj is None and super().has_change_permission(request)

    @admin.display(description="recipients")
    def recipient_summary(self, obj: Delivery) -> str:
        addresses = obj.recipient_list
        more = f" (+{len(addresses) - 2})" if len(addresses) > 2 else ""
        return ", ".join(addresses[:2]) + more

    @admin.display(description="stored message")
    def stored_message(self, obj: Delivery) -> str:
        size = (
            Delivery.objects.filter(pk=obj.pk)
            .exclude(raw_message=None)
            .values_list(Length("raw_message"), flat=True)
            .first()
        )
        return f"{size} bytes, kept until it is sent" if size else "not kept"

    @admin.action(description="Retry now (deferred messages)", permissions=("change",))
    def retry_now(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        selected = list(queryset.values_list("pk", flat=True))
        self._report(request, deferral.retry_now(selected), len(selected), "queued for a retry")

    @admin.action(description="Cancel (deferred messages)", permissions=("change",))
    def cancel(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        selected = list(queryset.values_list("pk", flat=True))
        self._report(request, deferral.cancel(selected), len(selected), "cancelled")

    def _report(self, request: HttpRequest, done: int, selected: int, what: str) -> None:
        self.message_user(request, f"{done} deferred message(s) {what}.", messages.SUCCESS)
        if selected > done:
            self.message_user(
                request,
                f"{selected - done} selected message(s) were not deferred and were left alone.",
                messages.WARNING,
            )
