"""The jobs app the event tests run in real processes.

Each handler appends ``handler event_id pid`` to the ledger file (``$BB_LEDGER``), which
decides what ran and how often. ``BB_LENIENT=1`` is the "fixed" contract (a user id may
be a string), for replay tests.
"""

import os

from pydantic import BaseModel, ConfigDict

from backbeat import App, Event
from backbeat.config import WorkerSettings

app = App(name=os.environ.get("BB_APP_NAME", "evtest"), worker=WorkerSettings(maintenance_interval=0.25))


class Linked(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: str if os.environ.get("BB_LENIENT") else int  # type: ignore[valid-type]
    token: str


def record(handler: str, event: Event) -> None:
    fd = os.open(os.environ["BB_LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{handler} {event.id} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


@app.on("account.linked", schema=Linked, name="ev.start")
def start(event: Event) -> None:
    record("start", event)


@app.on("account.*", name="ev.audit")
async def audit(event: Event) -> None:
    record("audit", event)
