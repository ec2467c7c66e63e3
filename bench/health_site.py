"""Settings for bench/health_endpoint.py only: the project's settings, with a URL module
that adds one trivial JSON view to compare the health endpoint with."""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "health_urls"
