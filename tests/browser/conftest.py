"""Fixtures for the browser tests: Debian's Chromium driven by Playwright against
pytest-django's live server, a fresh browser context per test, numbered screenshots of each
step, and a login through the real admin login page.

Chromium must be at /usr/bin/chromium: when it is not, the tests fail (they never skip) and
say that ``.ci/run`` installs it. Screenshots land in
``test-artifacts/browser/<test name>/<NN-step>.png`` (git-ignored; CI keeps the folder).
These fixtures never put a secret anywhere but where a user types it.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.db import connections
from django.test import Client
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Generous but bounded: every wait in these tests is for a condition, never a fixed sleep.
TIMEOUT_MS = 15_000
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
LOGIN_PASSWORD = "login-pw-1"

expect.set_options(timeout=TIMEOUT_MS)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    """Keep each phase's report on the item, so a fixture can tell that the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def require_chromium() -> str:
    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests drive Debian's Chromium. `.ci/run` "
            "installs it (apt-get install chromium); run it once, or install the package.",
            pytrace=False,
        )
    return str(CHROMIUM)


@pytest.fixture(autouse=True)
def _browser_test_settings(settings) -> None:
    """Only the admin route: no SMTP_* environment or backup server to fall over to."""
    settings.SMTP_ENVIRONMENT_ROUTE = {"server": "", "port": 587}
    settings.SMTP_BACKUP_ROUTE = {"server": "", "port": 587}


@pytest.fixture
def allow_ports(settings) -> Callable[..., None]:
    """Let the settings form accept the test servers' random ports (as in admin_testing)."""

    def allow(*servers: object) -> None:
        settings.SMTP_ALLOWED_PORTS = [25, 465, 587, 2525, *(s.port for s in servers)]

    return allow


@pytest.fixture(autouse=True)
def _no_health_from_an_earlier_test() -> Iterator[None]:
    # The live server runs in this process: its health endpoint must not serve a health
    # computed for another test's database.
    from smtp_settings.health import recent_health

    recent_health.clear()
    yield
    recent_health.clear()


@pytest.fixture
def browser_context(live_server, monkeypatch, request) -> Iterator[BrowserContext]:
    """A new headless Chromium (its own temporary profile) and context on the live server.

    When the test fails, every open page is saved as ``failure-N.png`` beside the steps.
    """
    executable = require_chromium()
    # Playwright's sync API runs an event loop in this thread; the ORM calls a test makes
    # between browser steps are ordinary blocking calls, not async code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        context = browser.new_context(
            base_url=live_server.url, viewport={"width": 1280, "height": 900}
        )
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield context
            report = getattr(request.node, "report_call", None)
            if report is not None and report.failed:
                folder = artifact_folder(request.node.name)
                folder.mkdir(parents=True, exist_ok=True)
                for number, open_page in enumerate(context.pages, 1):
                    open_page.screenshot(path=str(folder / f"failure-{number}.png"), full_page=True)
        finally:
            browser.close()
            # The ORM calls a test makes inside Playwright's context open database
            # connections that Django's own teardown does not see: close them here, or on
            # PostgreSQL the test database cannot be dropped ("accessed by other users").
            connections.close_all()


@pytest.fixture
def browser_page(browser_context: BrowserContext) -> Page:
    """A blank page in a fresh context: nobody is logged in yet."""
    return browser_context.new_page()


def artifact_folder(test_name: str) -> Path:
    """``test-artifacts/browser/<test name>`` (a parametrized id made safe for a path)."""
    return ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "-", test_name).strip("-")


class Screenshots:
    """``shot(page, "step")`` saves ``<NN>-step.png`` in this test's folder, numbered in the
    order taken; the folder is emptied first, so it shows only this run."""

    def __init__(self, test_name: str) -> None:
        self.folder = artifact_folder(test_name)
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.taken: list[Path] = []

    def __call__(self, page: Page, step: str) -> Path:
        path = self.folder / f"{len(self.taken) + 1:02d}-{step}.png"
        page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        return path


@pytest.fixture
def shot(request) -> Screenshots:
    return Screenshots(request.node.name)


@pytest.fixture
def superuser(django_user_model) -> object:
    """A superuser with an email address (the default recipient of a test email)."""
    return django_user_model.objects.create_superuser(
        "admin", email="admin@example.com", password=LOGIN_PASSWORD
    )


def log_in(page: Page, username: str, password: str = LOGIN_PASSWORD) -> None:
    """Log in through the real admin login page, starting from /admin/ as a person would."""
    page.goto("/admin/")
    page.wait_for_url(re.compile(r"/admin/login/"))
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("#login-form [type=submit]")
    page.wait_for_url(re.compile(r"/admin/$"))
    expect(page.locator("#user-tools")).to_contain_text(username)


def logged_in_context(context: BrowserContext, user: object, base_url: str) -> None:
    """Give ``context`` a session for ``user`` without the login page (Django's
    ``force_login``), for tests about a page rather than about logging in."""
    client = Client()
    client.force_login(user)
    session = client.cookies["sessionid"].value
    context.add_cookies([{"name": "sessionid", "value": session, "url": base_url}])
