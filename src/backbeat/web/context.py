"""What every handler needs: the client, the settings and the guard, on ``app.state``."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from backbeat.app import App
from backbeat.client import Client
from backbeat.store.base import Store
from backbeat.web.security import Guard
from backbeat.web.settings import DashboardSettings


@dataclass(frozen=True, kw_only=True, slots=True)
class Dashboard:
    client: Client
    app: App
    """Schedules are changed through ``app.schedules`` (as the CLI and Python do); an ``App``
    with no tasks when the dashboard was given a client or a URL."""
    settings: DashboardSettings
    guard: Guard
    owns_client: bool
    """True when ``create_app`` built the client from a URL (and closes it on shutdown)."""

    async def store(self) -> Store:
        return await self.client.astore()

    def now(self) -> float:
        return self.client.clock.now()

    @property
    def stale_after(self) -> float:
        """A worker is alive while it heartbeated within this many seconds (as ``backbeat status``)."""
        return 2 * self.client.settings.worker.lease


def app_over(client: Client) -> App:
    """An ``App`` with no tasks that works through ``client`` (its store, clock and settings):
    ``app.schedules`` checks tasks against those workers registered, as the CLI does."""
    app = App(client.settings.url, clock=client.clock)
    app.settings, app.client = client.settings, client
    return app


def dashboard(request: Request) -> Dashboard:
    found: Dashboard = request.app.state.backbeat
    return found
