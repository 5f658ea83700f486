"""The demo's main app: the talk's "models, views, controllers" box.

It does not run jobs and imports no job code. When a user links their Twitter account it
says so — "User 123 linked twitter account with token 'abc'" — by emitting the event
``account.linked`` through ``backbeat.Client``. The client writes into the jobs app's
store here; with a broker URL (``amqp://``, ``nats://``, ``https://``) the same call
publishes to the message queue instead.

The event id (``account.linked:<user>``) makes the emit idempotent: sent twice, it is
handled once.
"""

from __future__ import annotations

import secrets

from backbeat import Client
from backbeat.clock import Clock, SystemClock


class MainApp:
    """Links ``users`` accounts (ids 1..users), spread evenly over ``over`` seconds."""

    def __init__(self, client: Client, users: int, *, over: float, clock: Clock | None = None) -> None:
        self.client = client
        self.users = users
        self.over = over
        self.clock: Clock = clock or SystemClock()
        self.emitted = 0

    async def run(self) -> None:
        start = self.clock.now()
        for user_id in range(1, self.users + 1):
            await self.clock.sleep(start + self.over * (user_id - 1) / self.users - self.clock.now())
            await self.link(user_id, token=secrets.token_urlsafe(12))

    async def link(self, user_id: int, *, token: str) -> None:
        """The user finished the OAuth dance and we hold their token: tell the jobs app."""
        await self.client.aemit(
            "account.linked",
            {"user_id": user_id, "token": token},
            id=f"account.linked:{user_id}",
            key=f"user:{user_id}",
            secret=("token",),  # encrypted before it is stored, like every copy the jobs app makes
        )
        self.emitted += 1
