from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path
from django.utils.decorators import method_decorator
from django_ratelimit.decorators import ratelimit

from smtp_settings import health_views


def _reset_rate(group: str, request: object) -> str:
    return settings.PASSWORD_RESET_RATE


urlpatterns = [
    # Before the admin include: a monitor must get JSON (401/200/503), never the admin's
    # login redirect.
    path("admin/health/email", health_views.email_health, name="email-health"),
    path("metrics", health_views.metrics, name="metrics"),
    # Django's own password reset, offered on the admin login page. It is also the plainest
    # example of app code sending mail from a web process through the dynamic backend.
    # Rate-limited per client address: it sends mail on an anonymous request.
    path(
        "admin/password_reset/",
        method_decorator(ratelimit(key="ip", rate=_reset_rate, method="POST", block=True), "post")(
            auth_views.PasswordResetView
        ).as_view(),
        name="admin_password_reset",
    ),
    path(
        "admin/password_reset/done/",
        auth_views.PasswordResetDoneView.as_view(),
        name="password_reset_done",
    ),
    path(
        "reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "reset/done/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    path("admin/", admin.site.urls),
]
