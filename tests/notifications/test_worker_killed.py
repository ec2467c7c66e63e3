"""A Celery worker killed with SIGKILL while it holds a message: the sweeper of another worker
re-queues it once the lease has expired, and the message is sent exactly once.

Both workers are real ``celery -A config worker`` processes on the test broker and a
database they share with this test (``shared_db``); the second one runs beat (``-B``) with
a one-second sweep, so the sweeper is the real beat task too.
"""

from __future__ import annotations

import pytest
from django.core import mail

from notifications.models import Delivery, Status
from tests.waiting import wait_until


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_worker_killed_holding_a_lease_is_swept_and_the_message_sent_once(
    shared_db, worker_process, raw_factory, smtp_factory, configure_admin, settings
):
    settings.EMAIL_RETRY_BASE_SECONDS = 0.2
    stall = raw_factory("stall")  # accepts the connection and never says a word
    configure_admin(None, smtp_port=stall.port, smtp_timeout=60)
    stall.stop()  # down while the app sends: the message is deferred
    assert mail.send_mail("Lease test", "Body", None, ["user@example.net"]) == 1
    delivery = Delivery.objects.get()
    assert delivery.status == Status.DEFERRED
    stall = raw_factory("stall")
    configure_admin(None, smtp_port=stall.port, smtp_timeout=60)

    first = worker_process("doomed", EMAIL_SENDING_LEASE_SECONDS=3).start()
    wait_until(
        lambda: (
            Delivery.objects.filter(pk=delivery.pk, status=Status.SENDING).exists()
            and stall.connections >= 1
        ),
        timeout=60,
        what=f"the first worker to claim the message and connect\n{first.output()}",
    )
    first.kill()  # SIGKILL mid-send: no result, no cleanup, the lease stays behind
    assert first.process.returncode == -9
    held = Delivery.objects.get(pk=delivery.pk)
    assert held.status == Status.SENDING
    assert held.attempts == 2

    stall.stop()
    server = smtp_factory(port=stall.port)  # the route is back, same host and port
    worker_process("survivor", EMAIL_SENDING_LEASE_SECONDS=60, EMAIL_RETRY_SWEEP_SECONDS=1).start(
        beat=True
    )

    [received] = server.wait_for(1, timeout=60)
    assert received.message_id == delivery.message_id
    sent = wait_until(
        lambda: Delivery.objects.filter(pk=delivery.pk, status=Status.SENT).first(),
        timeout=30,
        what="the delivery marked sent",
    )
    assert sent.attempts == 3  # the first send, the killed try, the one that went out
    assert sent.raw_message is None
    lost = sent.attempt_log.get(number=2)
    assert "stopped before it finished" in lost.error
    assert len(server.messages) == 1  # sent once
