"""The private servers the fault tests crash keep what they acknowledged across a crash, so a
loss the fault tests find is backbeat's, not the harness's. PostgreSQL's is tested here
before its store exists, so adding that store to the fault suite is one entry."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import redis

from tests.faults.servers import PrivatePostgres, PrivateRedis, Refuser

pytestmark = pytest.mark.faults


def test_private_redis_keeps_acknowledged_writes_across_a_crash(tmp_path: Path) -> None:
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        with redis.Redis(port=server.port) as client:
            client.set("k", "v")
        server.kill()
        refuser = Refuser(server.port)
        with pytest.raises(redis.ConnectionError), redis.Redis(port=server.port) as client:
            client.get("k")
        assert refuser.close() >= 1
        server.start()
        before = server.connections_received()
        with redis.Redis(port=server.port) as client:
            assert client.get("k") == b"v"
        assert server.connections_received() == before + 2  # the GET's client, and this reading's own
    finally:
        server.stop()


@pytest.mark.skipif(not shutil.which("psql"), reason="no PostgreSQL client")
def test_private_postgres_keeps_committed_rows_across_a_crash(tmp_path: Path) -> None:
    server = PrivatePostgres(tmp_path)
    server.start()

    def psql(sql: str) -> str:
        return subprocess.run(["psql", server.url, "-qAtc", sql], check=True, capture_output=True, text=True).stdout

    try:
        psql("CREATE TABLE t (x int); INSERT INTO t VALUES (42)")
        server.kill()
        server.start()  # crash recovery
        assert psql("SELECT x FROM t").strip() == "42"
    finally:
        server.close()
