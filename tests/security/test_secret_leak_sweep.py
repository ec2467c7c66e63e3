"""The secret leak sweep (issue 7): run a full scenario, then search everything it left behind
for the SMTP password. Zero hits.

The scenario (real admin form POSTs by a logged-in superuser, the tools' endpoints and their
polled status URLs, a real Celery worker, real SMTP servers, ``send_mail``, commands):

- settings edits: set the password, change other fields, change the host without the
  password (cleared), type it again, a save from a stale page and a form with a validation
  error, each with a password typed;
- Test connection and Send test email against a good server, a server that refuses the
  password, and a server that never answers;
- hostile servers that echo the AUTH exchange in their 535 (the base64 lines as sent, the
  AUTH PLAIN blob, the decoded credentials in clear), and one that accepts AUTH and quotes
  it when it refuses the message at DATA; driven by the tools, app sends,
  ``smtp_test_connection``, the health check each save queues in the worker (with its
  alerts), and the worker's retries of the deferred mail, all delivered in the end;
- every health reader (endpoint with session and bearer token, /metrics, the admin index
  panel, ``smtp_status``), the delivery log and settings history pages, every test run's
  status, and ``smtp_rotate_key`` from the old key to a new one.

Then it searches every response, every log record of every logger at DEBUG (message,
arguments, ``extra``, exception), command output, what the process printed, every mail the
servers received, every task message published, every command sent to the test Redis
database and every key and value left in it, ``dumpdata`` and every cell of every table: for
the passwords in clear and as base64 (AUTH LOGIN, the AUTH PLAIN blob), and for their
ciphertext outside the password column, the Redis config snapshot and the
``password_token`` of a test-connection task message.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from cryptography.fernet import Fernet, MultiFernet
from django.conf import settings as django_settings

from notifications import recorder
from notifications.models import PENDING, Delivery, Status
from smtp_settings.errors import MASK
from smtp_settings.forms import STALE_PAGE
from smtp_settings.models import AdminConfig
from tests.conftest import SMTP_USER, route_settings
from tests.security.collectors import (
    BrokerCapture,
    RedisMonitor,
    ResponseRecorder,
    database_sources,
    redis_sources,
    snapshot_key,
)
from tests.security.finder import Finder, Source, needles
from tests.security.scenario import Scenario
from tests.smtp_servers import RawServer
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "Leak-Canary-7Qx2vR9m"
STALE_TYPED = "Stale-Page-Typed-4Kd8w"
INVALID_TYPED = "Invalid-Form-Typed-9Zt3p"
SECRETS = {
    "the SMTP password": PASSWORD,
    "a password typed on a stale page": STALE_TYPED,
    "a password typed into an invalid form": INVALID_TYPED,
}
HEALTH_TOKEN = "health-token-for-the-sweep-0123456789"
NO_ROUTE = {"server": "", "port": 587}
NEW_KEY = Fernet.generate_key().decode()
AUTH_REFUSING = ("echo_auth", "echo_auth_plain", "echo_auth_clear")


def at(server: object) -> dict[str, str]:
    """The form fields that point the settings at ``server``."""
    return {
        "smtp_server": server.host,
        "smtp_port": str(server.port),
        "smtp_security": getattr(server, "security", "NONE"),
    }


def alerts_in(server: object) -> int:
    return sum("Email delivery" in str(m.message["Subject"]) for m in server.messages)


# -- the scenario, part by part ----------------------------------------------------------------
def edit_settings(s: Scenario, srv: SimpleNamespace) -> None:
    s.save(
        smtp_enabled="on",
        **at(srv.good),
        smtp_username=SMTP_USER,
        smtp_timeout="3",
        sender_name="Example Alerts",
        sender_email="noreply@example.com",
        new_password=PASSWORD,
    )
    stale_page = AdminConfig.get_solo()  # what another admin still has open
    s.save(sender_name="Example Billing")
    assert AdminConfig.get_solo().has_password
    s.save(smtp_enabled=None, **at(srv.wrong))  # host changed, password not typed: cleared
    assert not AdminConfig.get_solo().has_password
    s.save(smtp_enabled="on", new_password=PASSWORD)  # typed again for the new host
    refused = s.save(False, row=stale_page, sender_name="Stale", new_password=STALE_TYPED)
    assert STALE_PAGE in refused.content.decode()
    s.save(False, smtp_server="smtp://bad.example", new_password=INVALID_TYPED)


def use_the_tools(s: Scenario, srv: SimpleNamespace) -> None:
    """Good server, refused password (typed and stored), a server that never answers."""
    assert s.test_connection(**at(srv.good), new_password=PASSWORD)["status"] == "ok"
    assert s.test_connection()["result"]["step"] == "auth"  # the saved, wrong server
    assert s.test_connection(**at(srv.wrong), new_password=PASSWORD)["result"]["step"] == "auth"
    silent = s.test_connection(**at(srv.stalled), smtp_timeout="1", new_password=PASSWORD)
    assert silent["status"] == "error"
    assert s.send_test_email()["result"]["step"] == "auth"
    s.read_health()
    s.save(**at(srv.good), new_password=PASSWORD)
    assert s.test_connection()["status"] == "ok"
    assert s.send_test_email()["status"] == "ok"
    s.read_health()


def meet_hostile_servers(s: Scenario, srv: SimpleNamespace, settings) -> dict[str, list[str]]:
    """Every path through servers that echo the AUTH exchange; returns the server texts the
    results showed, per server."""
    shown: dict[str, list[str]] = {}
    for number, mode in enumerate(AUTH_REFUSING, start=1):
        echo = srv.echoes[mode]
        settings.SMTP_BACKUP_ROUTE = NO_ROUTE
        typed = s.test_connection(**at(echo), new_password=PASSWORD)["result"]
        # Saved while a backup route works: the check the save queues finds the admin route
        # failing and alerts the admins through the backup.
        settings.SMTP_BACKUP_ROUTE = route_settings(srv.backup)
        s.save(**at(echo), new_password=PASSWORD)
        wait_until(lambda n=number: alerts_in(srv.backup) >= n, what=f"alert about {mode}")
        s.read_health()
        settings.SMTP_BACKUP_ROUTE = NO_ROUTE
        stored = s.test_connection()["result"]
        emailed = s.send_test_email()["result"]
        assert typed["smtp_code"] == stored["smtp_code"] == emailed["smtp_code"] == 535
        shown[mode] = [typed["smtp_text"], stored["smtp_text"], emailed["smtp_text"]]
        assert s.app_sends(f"Invoice through {mode}").status == Status.DEFERRED
        assert s.command("smtp_test_connection", "--route", "admin", "--json") == 1
    # It accepts AUTH, so the probe (which stops before DATA) passes; the send path, the
    # deferral and the retries get its refusal quoting the AUTH line.
    at_data = srv.echoes["echo_auth_at_data"]
    assert s.test_connection(**at(at_data), new_password=PASSWORD)["status"] == "ok"
    s.save(**at(at_data), new_password=PASSWORD)
    emailed = s.send_test_email()["result"]
    assert Delivery.objects.get(message_id=emailed["message_id"]).status == Status.DEFERRED
    assert s.app_sends("Invoice refused at DATA").status == Status.DEFERRED
    return shown


def retry_everything(s: Scenario, srv: SimpleNamespace, settings) -> Delivery:
    """The worker retries every deferred message through the server that quotes AUTH at
    DATA, then delivers them all through the backup; returns one of them."""
    settings.EMAIL_RETRY_BASE_SECONDS, settings.EMAIL_RETRY_MAX_SECONDS = 0.3, 1.0
    parked = dict(Delivery.objects.filter(status=Status.DEFERRED).values_list("pk", "attempts"))
    assert len(parked) >= len(srv.echoes)
    s.retry_now_in_admin(list(parked))
    retried = s.app_sends("Retried by the worker")
    wait_until(
        lambda: all(
            Delivery.objects.get(pk=pk).attempts >= attempts + 1
            for pk, attempts in {**parked, retried.pk: 2}.items()
        ),
        what="every deferred message retried by the worker through the echoing server",
    )
    settings.SMTP_BACKUP_ROUTE = route_settings(srv.backup)  # now a route takes them
    wait_until(
        lambda: not Delivery.objects.filter(status__in=PENDING).exists(),
        what="every deferred message delivered",
    )
    s.wait_for_idle_worker()  # retry tasks that found nothing left to send
    assert set(Delivery.objects.values_list("status", flat=True)) == {Status.SENT}
    assert retried.message_id in srv.backup.recorder.message_ids()
    settings.SMTP_BACKUP_ROUTE = NO_ROUTE
    return Delivery.objects.get(subject="Invoice refused at DATA")


def rotate_the_key(s: Scenario, srv: SimpleNamespace, settings, old_key: str) -> None:
    """New key first, rotate, then the old key dropped: everything still works."""
    s.save(**at(srv.good), new_password=PASSWORD)
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY, old_key]
    assert s.command("smtp_rotate_key") == 0
    s.remember_token()
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]
    assert s.test_connection()["status"] == "ok"
    assert s.send_test_email()["status"] == "ok"
    s.health_check_through_worker()
    s.read_health()
    assert s.command("sendtestemail", "ops@example.net") == 0


# -- the test ----------------------------------------------------------------------------------
@pytest.fixture
def servers(smtp_factory, raw_factory, fast_retries) -> SimpleNamespace:
    srv = SimpleNamespace(
        good=smtp_factory("TLS", auth=True, credentials={SMTP_USER: PASSWORD}),
        wrong=smtp_factory("TLS", auth=True, credentials={SMTP_USER: "the-servers-own"}),
        backup=smtp_factory(),  # no AUTH: the route alerts and retried mail go out through
        stalled=raw_factory("stall"),
        echoes={mode: raw_factory(mode) for mode in RawServer.ECHO_MODES},
    )
    settings = fast_retries
    ports = [server.port for server in (srv.good, srv.wrong, srv.stalled, *srv.echoes.values())]
    settings.SMTP_ALLOWED_PORTS = [25, 465, 587, 2525, *ports]
    settings.SMTP_TEST_RATE = "1000/m"
    settings.EMAIL_HEALTH_TOKEN = HEALTH_TOKEN
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.SMTP_ENVIRONMENT_ROUTE = settings.SMTP_BACKUP_ROUTE = NO_ROUTE
    # Deferred mail waits (no automatic retry) until the retry part of the scenario, and
    # sent records reach the database when the test flushes them: no write of the worker
    # or of the flusher overlaps an admin save (SQLite would refuse one of the two).
    settings.EMAIL_RETRY_BASE_SECONDS = settings.EMAIL_RETRY_MAX_SECONDS = 3600
    settings.EMAIL_DELIVERY_LOG_FLUSH_SECONDS = 3600
    return srv


def test_no_trace_of_the_smtp_password_anywhere_after_a_full_scenario(
    sweep_worker, debug_logs, fast_retries, servers, client, django_user_model, redis_client, capfd
):
    settings, srv = fast_retries, servers
    old_key = django_settings.FIELD_ENCRYPTION_KEYS[0]
    responses = ResponseRecorder(client)
    with BrokerCapture() as broker, RedisMonitor(django_settings.REDIS_URL) as monitor:
        django_user_model.objects.create_superuser("root", "root@example.com", "login-pw-1")
        assert client.get("/admin/login/").status_code == 200
        login = client.post("/admin/login/", {"username": "root", "password": "login-pw-1"})
        assert login.status_code == 302
        s = Scenario(client, HEALTH_TOKEN)
        edit_settings(s, srv)
        use_the_tools(s, srv)
        shown = meet_hostile_servers(s, srv, settings)
        refused_at_data = retry_everything(s, srv, settings)
        rotate_the_key(s, srv, settings, old_key)
        s.browse_history_and_log()
        assert recorder.flush()
    out, err = capfd.readouterr()
    sources = [
        *responses.sources(),
        *debug_logs.sources(),
        *(Source(f"command {name}", text) for name, text in s.outputs),
        Source("process stdout", out),
        Source("process stderr", err),
        *(
            Source(f"mail #{n} received by the {name} server", received.data.decode())
            for name in ("good", "wrong", "backup")
            for n, received in enumerate(getattr(srv, name).messages)
        ),
        *broker.sources(),
        *monitor.sources(snapshot_key(), s.stored_tokens),
        *redis_sources(redis_client, snapshot_key(), s.stored_tokens),
        *database_sources(),
    ]
    finder = Finder(
        needles(SECRETS, [SMTP_USER]),
        frozenset(SECRETS.values()),
        keys=[NEW_KEY, old_key],
        known_tokens=s.stored_tokens | set(broker.typed_tokens()),
    )

    # The secret was exposed, and the search would see it: the hostile servers put every
    # form of it in their replies, and the app received those replies and masked them.
    wire = "\n".join(line.decode() for echo in srv.echoes.values() for line in echo.refusals)
    assert {hit.what for hit in finder.search([Source("the hostile servers", wire)])} == {
        "the SMTP password in clear",
        "the SMTP password as base64 (AUTH LOGIN)",
        "the SMTP password as the AUTH PLAIN blob",
    }
    for mode, texts in shown.items():
        assert all("Authentication failed for" in t and MASK in t for t in texts), (mode, texts)
    *failed, _sent = refused_at_data.attempt_log.values_list("error", flat=True)
    assert len(failed) >= 2
    assert all(f"session was AUTH PLAIN {MASK}" in error for error in failed), failed
    # The capture listened to every logger at DEBUG, the worker's too, to the end.
    assert debug_logs in logging.getLogger().handlers
    assert any(n.startswith("celery.pool") and lv == "DEBUG" for n, lv, _ in debug_logs.records)
    assert any("outcome=deferred" in text for _, _, text in debug_logs.app_records())
    # The ciphertext was where it belongs: the column, the snapshot, the typed test.
    stored = AdminConfig.objects.get().smtp_password.token
    assert stored in s.stored_tokens
    keyring = MultiFernet([Fernet(NEW_KEY), Fernet(old_key)])
    assert keyring.decrypt(stored.encode()).decode() == PASSWORD
    assert {keyring.decrypt(t.encode()).decode() for t in broker.typed_tokens()} == {PASSWORD}
    snapshot = next(src for src in sources if src.where == f"redis key {snapshot_key()}[0]")
    assert snapshot.allowed_tokens == {stored}
    assert len(responses.responses) > 100
    assert monitor.commands

    hits = finder.search(sources)
    assert not hits, "the password leaked:\n" + "\n".join(map(str, hits))
