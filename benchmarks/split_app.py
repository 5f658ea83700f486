"""The app benchmarks/drain_split.py runs: the yardstick's job (one Redis INCR on a
completion counter), written once as a sync task (run on a task thread, with redis-py's
sync client) and once as an async task (run on the worker's event loop, with its asyncio
client). The counter's key is $SPLIT_COUNTER, in the Redis database of $BACKBEAT_URL."""

import os
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio

from backbeat import App

app = App()
COUNTER = os.environ.get("SPLIT_COUNTER", "split-done")
_URL = urlunsplit(urlsplit(os.environ.get("BACKBEAT_URL", "redis://127.0.0.1:6379/0"))._replace(query=""))
_sync = redis.Redis.from_url(_URL)
_async: redis.asyncio.Redis | None = None


@app.task(name="split.sync_incr")
def sync_incr() -> None:
    _sync.incr(COUNTER)


@app.task(name="split.async_incr")
async def async_incr() -> None:
    global _async
    if _async is None:
        _async = redis.asyncio.Redis.from_url(_URL)
    await _async.incr(COUNTER)
