"""``GET /admin/health/email`` and ``GET /metrics``: thin renderers of ``EmailHealthMonitor``.

Who may read them: a staff user's session, or ``Authorization: Bearer <EMAIL_HEALTH_TOKEN>``
compared in constant time (an empty configured token matches nothing). Anyone else gets
401 with a JSON body, never a redirect to a login page a monitor cannot follow. A request
with a token is judged by the token alone, so a monitor's request never loads a session.

The health view serves recorded probe results: it opens no SMTP connection and makes at
most one database query (the resolver's routes are in memory; the health is computed at
most once per ``EMAIL_HEALTH_CACHE_SECONDS`` per process, see ``health.RecentHealth``).
It must never put a secret in a response.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_safe

from smtp_settings.health import EmailHealth, recent_health


def bearer_token_matches(request: HttpRequest) -> bool:
    expected = settings.EMAIL_HEALTH_TOKEN or ""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not expected:
        return False
    return hmac.compare_digest(given.strip().encode(), expected.encode())


def is_authorized(request: HttpRequest) -> bool:
    if "Authorization" in request.headers:
        return bearer_token_matches(request)
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_active and user.is_staff)


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"
    return response


def health_auth(view: Callable[[HttpRequest], HttpResponse]) -> Callable[..., HttpResponse]:
    """401 JSON unless staff session or the bearer token; every answer ``no-store``."""

    @wraps(view)
    def wrapper(request: HttpRequest) -> HttpResponse:
        if not is_authorized(request):
            response = JsonResponse(
                {
                    "error": "unauthorized",
                    "detail": "Send 'Authorization: Bearer <EMAIL_HEALTH_TOKEN>' or log in "
                    "as staff.",
                },
                status=401,
            )
            response["WWW-Authenticate"] = 'Bearer realm="email-health"'
            return _no_store(response)
        return _no_store(view(request))

    return wrapper


_rendered: tuple[EmailHealth, bytes] | None = None


def _render(health: EmailHealth) -> bytes:
    """The JSON of ``health``, encoded once however many requests the same health serves."""
    global _rendered
    cached = _rendered
    if cached is not None and cached[0] is health:
        return cached[1]
    body = json.dumps(health.as_dict(), cls=DjangoJSONEncoder).encode()
    _rendered = (health, body)
    return body


@require_safe
@health_auth
def email_health(request: HttpRequest) -> HttpResponse:
    """200 when mail can be delivered now, 503 otherwise; the reason is in the JSON."""
    health = recent_health.get(settings.EMAIL_HEALTH_CACHE_SECONDS)
    return HttpResponse(_render(health), content_type="application/json", status=health.http_status)


@require_safe
@health_auth
def metrics(request: HttpRequest) -> HttpResponse:
    from smtp_settings.metrics import CONTENT_TYPE, render_metrics

    return HttpResponse(render_metrics(), content_type=CONTENT_TYPE)
