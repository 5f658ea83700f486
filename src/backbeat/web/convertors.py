"""The ``queue`` path convertor: a queue name may hold any character but "," and NUL,
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
