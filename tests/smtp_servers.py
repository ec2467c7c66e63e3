"""Real SMTP servers for tests and benchmarks, on free loopback ports.

``SmtpServer`` wraps an aiosmtpd ``Controller`` with a recording handler: every message it
received (envelope, parsed message, Message-ID), every AUTH attempt (with the credentials,
so a test can prove which password reached which host), and the number of sessions.
It can do STARTTLS or implicit TLS with a trustme certificate, require AUTH, and answer
chosen codes at MAIL FROM, RCPT TO or DATA. ``RawServer`` plays the servers aiosmtpd
cannot: one that accepts and never speaks (stall), one that drops the line after EHLO, and
hostile ones that echo the client's AUTH exchange (base64 or decoded) in their 535 reply.
``free_port()`` gives a port with nothing listening (connection refused).

Binds only to 127.0.0.1. Nothing here mocks smtplib.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    peer: Any = None
    # When it arrived, on this process's monotonic clock: end-to-end tests compare it with
    # the moment a settings change was saved.
    received_at: float = field(default_factory=time.monotonic)

    @property
    def message(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])


@dataclass
class Behaviour:
    """Codes to answer instead of 250; None answers normally."""

    mail: str | None = None
    rcpt: str | dict[str, str] | None = None  # a code for all, or per address
    data: str | None = None


@dataclass
class Recorder:
    messages: list[Received] = field(default_factory=list)
    auth_attempts: list[tuple[str, str, bool]] = field(default_factory=list)
    sessions: int = 0
    mail_commands: int = 0
    data_commands: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    arrived: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.arrived = threading.Condition(self.lock)

    def message_ids(self) -> list[str]:
        with self.lock:
            return [m.message_id for m in self.messages]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Wait until at least ``count`` messages arrived; return them (no sleeps)."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while len(self.messages) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"{len(self.messages)} of {count} messages arrived in {timeout}s"
                    )
                self.arrived.wait(remaining)
            return list(self.messages)


class RecordingHandler:
    def __init__(self, recorder: Recorder, behaviour: Behaviour) -> None:
        self.recorder = recorder
        self.behaviour = behaviour

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        with self.recorder.lock:
            self.recorder.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        with self.recorder.lock:
            self.recorder.mail_commands += 1
        if self.behaviour.mail:
            return self.behaviour.mail
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        answer = self.behaviour.rcpt
        if isinstance(answer, dict):
            answer = answer.get(address)
        if answer:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.recorder.lock:
            self.recorder.data_commands += 1
        if self.behaviour.data:
            return self.behaviour.data
        received = Received(
            envelope.mail_from, list(envelope.rcpt_tos), envelope.content, session.peer
        )
        with self.recorder.arrived:
            self.recorder.messages.append(received)
            self.recorder.arrived.notify_all()
        return "250 Message accepted for delivery"


class SmtpServer:
    """An aiosmtpd server on 127.0.0.1. ``security`` is "NONE", "TLS" (STARTTLS) or "SSL"."""

    def __init__(
        self,
        *,
        security: str = "NONE",
        server_context: ssl.SSLContext | None = None,
        credentials: dict[str, str] | None = None,
        behaviour: Behaviour | None = None,
        port: int | None = None,
    ) -> None:
        self.security = security
        self.server_context = server_context
        self.credentials = credentials
        self.behaviour = behaviour or Behaviour()
        self.port = port or free_port()
        self.host = HOST
        self.recorder = Recorder()
        self.controller: Controller | None = None

    # -- what tests read ---------------------------------------------------------------------
    @property
    def messages(self) -> list[Received]:
        with self.recorder.lock:
            return list(self.recorder.messages)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        return self.recorder.wait_for(count, timeout)

    @property
    def auth_attempts(self) -> list[tuple[str, str, bool]]:
        with self.recorder.lock:
            return list(self.recorder.auth_attempts)

    # -- lifecycle ---------------------------------------------------------------------------
    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        username = auth_data.login.decode()
        password = auth_data.password.decode()
        ok = bool(self.credentials) and self.credentials.get(username) == password
        with self.recorder.lock:
            self.recorder.auth_attempts.append((username, password, ok))
        # handled=False: aiosmtpd then answers 535 itself; with the default (True) a refused
        # AUTH got no reply at all and the client waited for its timeout.
        return AuthResult(success=ok, handled=False)

    def start(self) -> SmtpServer:
        kwargs: dict[str, Any] = {"hostname": self.host, "port": self.port, "ready_timeout": 10}
        if self.security == "SSL":
            kwargs["ssl_context"] = self.server_context
        elif self.security == "TLS":
            kwargs["tls_context"] = self.server_context
            kwargs["require_starttls"] = False
        if self.credentials is not None:
            kwargs["authenticator"] = self._authenticate
            kwargs["auth_required"] = True
            # aiosmtpd only knows about STARTTLS; over implicit TLS (and for the "AUTH on a
            # plain line" tests) it must be told to offer AUTH anyway.
            kwargs["auth_require_tls"] = self.security == "TLS"
        self.controller = Controller(RecordingHandler(self.recorder, self.behaviour), **kwargs)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop(no_assert=True)
            self.controller = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RawServer:
    """A TCP server that misbehaves on purpose.

    ``mode="stall"``: accepts and never sends a greeting.
    ``mode="drop_after_ehlo"``: greets, answers EHLO, then closes the line.
    ``mode="greet_421"``: answers the connection with 421 and closes.

    The ``echo_auth*`` modes play a hostile or careless server that puts what the client
    sent during AUTH into its refusal, the way some relays log-and-echo: every AUTH ends
    in ``535 5.7.8 Authentication failed for <...>``, and MAIL FROM is refused with 530.

    ``mode="echo_auth"``: offers AUTH LOGIN only; echoes the exact lines the client sent
    (``AUTH LOGIN <user64>`` then, after a password challenge, ``<password64>``).
    ``mode="echo_auth_plain"``: the same, offering AUTH PLAIN only (``AUTH PLAIN <blob>``).
    (One mechanism each: after a refused login the client does not try another.)
    ``mode="echo_auth_clear"``: offers AUTH PLAIN LOGIN; echoes the decoded username and
    password in clear.
    ``mode="echo_auth_at_data"``: accepts any AUTH, MAIL FROM and RCPT TO (so a probe, which
    stops before DATA, passes), then refuses DATA for now with ``451 4.7.0 ...`` quoting the
    session's AUTH lines: the echo reaches the send path, its deferral and its retries.

    ``auth_lines`` records every line the client sent during AUTH, ``refusals`` every 535
    line this server answered, so that a test can prove the echo really happened.
    """

    ECHO_MODES = ("echo_auth", "echo_auth_plain", "echo_auth_clear", "echo_auth_at_data")

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.host = HOST
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.auth_lines: list[bytes] = []
        self.refusals: list[bytes] = []
        self._open: list[socket.socket] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> RawServer:
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self._thread.start()
        return self

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            self._open.append(conn)
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        try:
            if self.mode == "stall":
                self._stop.wait()
            elif self.mode == "greet_421":
                conn.sendall(b"421 4.3.2 Service not available, closing channel\r\n")
            elif self.mode == "drop_after_ehlo":
                conn.sendall(b"220 raw.test ESMTP\r\n")
                conn.settimeout(5)
                conn.recv(1024)
                conn.sendall(b"250-raw.test\r\n250 AUTH PLAIN LOGIN\r\n")
            elif self.mode in self.ECHO_MODES:
                self._echo_auth(conn)
        except OSError:
            pass
        finally:
            if self.mode != "stall":
                conn.close()

    # -- the echo_auth modes -----------------------------------------------------------------
    def _echo_auth(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        with conn.makefile("rb") as reader:
            self._converse(conn, reader)

    def _converse(self, conn: socket.socket, reader: Any) -> None:
        conn.sendall(b"220 raw.test ESMTP echo\r\n")
        mechanisms = {"echo_auth": b"LOGIN", "echo_auth_plain": b"PLAIN"}.get(
            self.mode, b"PLAIN LOGIN"
        )
        session: list[bytes] = []  # what this client sent during AUTH
        while not self._stop.is_set():
            line = reader.readline(4096).rstrip(b"\r\n")
            if not line:
                return
            verb = line.split(b" ", 1)[0].upper()
            if verb in (b"EHLO", b"HELO"):
                conn.sendall(
                    b"250-raw.test\r\n250-AUTH " + mechanisms + b"\r\n250 SIZE 1000000\r\n"
                )
            elif verb == b"AUTH":
                session += self._refuse_auth(conn, reader, line)
            elif verb in (b"RSET", b"NOOP"):
                conn.sendall(b"250 OK\r\n")
            elif verb == b"QUIT":
                conn.sendall(b"221 Bye\r\n")
                return
            elif self.mode == "echo_auth_at_data" and verb in (b"MAIL", b"RCPT"):
                conn.sendall(b"250 OK\r\n")
            elif self.mode == "echo_auth_at_data" and verb == b"DATA":
                self._refuse_data(conn, session)
            elif verb in (b"MAIL", b"RCPT", b"DATA"):
                conn.sendall(b"530 5.7.0 Authentication required\r\n")
            else:
                conn.sendall(b"502 5.5.2 Command not recognized\r\n")

    def _refuse_auth(self, conn: socket.socket, reader: Any, line: bytes) -> list[bytes]:
        """Play one AUTH exchange to its end, then refuse it echoing what the client sent
        (``echo_auth_at_data``: accept it); returns the lines the client sent."""
        parts = line.split(b" ")
        mechanism = parts[1].upper() if len(parts) > 1 else b""
        sent = [line]
        if mechanism == b"PLAIN" and len(parts) < 3:
            conn.sendall(b"334 \r\n")
            sent.append(reader.readline(4096).rstrip(b"\r\n"))
        elif mechanism == b"LOGIN":
            if len(parts) < 3:
                conn.sendall(b"334 VXNlcm5hbWU6\r\n")  # "Username:"
                sent.append(reader.readline(4096).rstrip(b"\r\n"))
            conn.sendall(b"334 UGFzc3dvcmQ6\r\n")  # "Password:"
            sent.append(reader.readline(4096).rstrip(b"\r\n"))
        with self._lock:
            self.auth_lines.extend(sent)
        if self.mode == "echo_auth_at_data":
            conn.sendall(b"235 2.7.0 Authentication successful\r\n")
            return sent
        if self.mode == "echo_auth_clear":
            echoed = self._decoded_credentials(mechanism, sent)
        else:
            echoed = b" ".join(sent)
        refusal = b"535 5.7.8 Authentication failed for " + echoed
        with self._lock:
            self.refusals.append(refusal)
        conn.sendall(refusal + b"\r\n")
        return sent

    def _refuse_data(self, conn: socket.socket, session: list[bytes]) -> None:
        refusal = b"451 4.7.0 Message deferred by policy, session was " + b" ".join(session)
        with self._lock:
            self.refusals.append(refusal)
        conn.sendall(refusal + b"\r\n")

    @staticmethod
    def _decoded_credentials(mechanism: bytes, sent: list[bytes]) -> bytes:
        """``user <name> password <secret>`` from the base64 the client sent."""
        blobs = sent[0].split(b" ")[2:] + sent[1:]
        decoded = []
        for blob in blobs:
            try:
                decoded.append(base64.b64decode(blob, validate=True))
            except (binascii.Error, ValueError):
                decoded.append(blob)
        if mechanism == b"PLAIN" and decoded:
            _authzid, _, rest = decoded[0].partition(b"\0")
            user, _, password = rest.partition(b"\0")
        else:
            user, password = [*decoded, b"", b""][:2]
        return b"user " + user + b" password " + password

    def stop(self) -> None:
        self._stop.set()
        for conn in self._open:
            conn.close()
        self.sock.close()
        self._thread.join(timeout=2)

    def __enter__(self) -> RawServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
