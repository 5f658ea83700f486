"""Path convertors. ``queue``: a queue name may hold any character but "," and NUL,
"/" and newlines included (Starlette's ``path`` convertor stops at a newline). It matches
any non-empty name, so a bad one gets the 400 that names the problem, not a bare 404."""

from __future__ import annotations

from starlette.convertors import Convertor, register_url_convertor


class QueueName(Convertor[str]):
    regex = r"[\s\S]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


QUEUE = "queue"
"""Use as ``{name:queue}`` in a route path; importing this module registers it."""
register_url_convertor(QUEUE, QueueName())


ACTIONS = ("pause", "resume", "run", "every", "remove")


class ScheduleKey(QueueName):
    """A schedule key as the last part of a path: any characters, but not ending in one of
    the action paths (``/pause`` ...), so ``DELETE /api/schedules/k/pause`` is a 405, not the
    removal of a schedule named ``k/pause``. Action routes take the key with ``queue``."""

    regex = rf"(?![\s\S]*/(?:{'|'.join(ACTIONS)})$)[\s\S]+"


SCHEDULE = "schedule"
register_url_convertor(SCHEDULE, ScheduleKey())
