"""A Celery task base class for tasks with an argument that must stay out of logs and events.

Celery copies a task's arguments into the ``argsrepr`` / ``kwargsrepr`` headers of its
message, and from there into the worker's "received" and "succeeded" log records (their
``extra`` data), the failure and retry records, the DEBUG line for each message the pool
runs, task events and monitoring tools. The typed password of "Test connection" travels to
the worker as a Fernet token (never plaintext); the token belongs in the broker message,
not in every log line about it. A task names such arguments in ``secret_args`` and every
way of queueing it (``delay``, ``apply_async``, a signature) publishes those headers with
them masked; the message body keeps the real value, which the worker needs.

It must never be used to carry a plaintext secret: the body is stored in the broker as is.
``app.send_task`` by name bypasses it (nothing here queues that way).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from celery import Task
from celery.utils.saferepr import saferepr

from smtp_settings.errors import MASK

REPR_MAXSIZE = 1024  # Celery's own limit for these headers


def masked_arguments(
    run: Callable[..., Any], secret: Sequence[str], args: Sequence[Any], kwargs: Mapping[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``args`` and ``kwargs`` with every non-empty argument named in ``secret`` masked."""
    names = list(inspect.signature(run).parameters)
    shown_args = tuple(
        MASK if position < len(names) and names[position] in secret and value else value
        for position, value in enumerate(args)
    )
    shown_kwargs = {
        name: MASK if name in secret and value else value for name, value in kwargs.items()
    }
    return shown_args, shown_kwargs


class SecretArgsTask(Task):
    """Set ``secret_args`` (argument names) on the task, e.g. through ``shared_task(...)``."""

    secret_args: tuple[str, ...] = ()

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        if self.secret_args:
            shown_args, shown_kwargs = masked_arguments(
                self.run, self.secret_args, args or (), kwargs or {}
            )
            options.setdefault("argsrepr", saferepr(shown_args, REPR_MAXSIZE))
            options.setdefault("kwargsrepr", saferepr(shown_kwargs, REPR_MAXSIZE))
        return super().apply_async(args, kwargs, **options)
