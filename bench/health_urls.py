"""URLs for bench/health_endpoint.py only: the project's, plus a trivial JSON view served by
the same gunicorn workers, as the baseline the health endpoint is measured against."""

from django.http import HttpRequest, JsonResponse
from django.urls import path

from config.urls import urlpatterns as project_urlpatterns


def trivial(request: HttpRequest) -> JsonResponse:
    response = JsonResponse({"status": "ok"})
    response["Cache-Control"] = "no-store"
    return response


urlpatterns = [path("bench/trivial", trivial), *project_urlpatterns]
