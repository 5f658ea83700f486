"""backbeat's web dashboard, JSON API, Prometheus ``/metrics`` and ``/healthz``.

    from backbeat.web import create_app
    dashboard = create_app(app, token=os.environ["BACKBEAT_TOKEN"])   # an ASGI app

Needs the ``web`` extra: ``pip install 'backbeat[web]'``. docs/dashboard.md covers
mounting, tokens, read-only mode and the metric names.
"""

from backbeat.web.app import create_app
from backbeat.web.settings import DashboardSettings

__all__ = ["DashboardSettings", "create_app"]
