from django.contrib import admin
from django.urls import path

from smtp_settings import health_views

urlpatterns = [
    # Before the admin include: a monitor must get JSON (401/200/503), never the admin's
    # login redirect.
    path("admin/health/email", health_views.email_health, name="email-health"),
    path("metrics", health_views.metrics, name="metrics"),
    path("admin/", admin.site.urls),
]
