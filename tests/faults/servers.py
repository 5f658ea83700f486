"""Store servers the fault tests may stop, crash and restart: each a private instance on a
free loopback port, its data in a temporary directory, never the shared one.

``SERVERS`` names a factory per server store (``stores.SERVERS`` the test parameters)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.conftest import eventually
from tests.ports import free_port


class PrivateServer(ABC):
    """One server process on ``port``, data in ``directory``: start, crash, stop, restart."""

    scheme: str

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()

    @property
    @abstractmethod
    def url(self) -> str:
        """The store URL of this server."""

    def url_via(self, port: int) -> str:
        """The store URL through something listening on ``port`` (a proxy) instead."""
        return self.url.replace(f":{self.port}/", f":{port}/", 1)

    @abstractmethod
    def start(self) -> None:
        """Start (again, on the same data); return once it answers."""

    @abstractmethod
    def kill(self) -> None:
        """Crash it: SIGKILL, no shutdown."""

    @abstractmethod
    def stop(self) -> None:
        """A clean shutdown (idempotent)."""

    @abstractmethod
    def connections_received(self) -> int:
        """Connections the server accepted since it started."""

    def close(self) -> None:
        """Stop for good, and delete what lives outside ``directory``."""
        self.stop()


class PrivateRedis(PrivateServer):
    """redis-server with AOF and ``appendfsync always`` (every write on disk before its
    reply), no RDB, ``noeviction``: the durable profile docs/guarantees.md promises on."""

    scheme = "redis"

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: run scripts/services.sh")
        self.argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(directory)]
        self.argv += ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
        self.argv += ["--maxmemory-policy", "noeviction", "--maxclients", "1000"]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        eventually(self.answers, what=f"redis-server on port {self.port}")

    def answers(self) -> bool:
        import redis

        try:
            with redis.Redis(port=self.port, socket_timeout=2) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)

    def connections_received(self) -> int:
        import redis

        with redis.Redis(port=self.port, socket_timeout=5) as client:
            return int(client.info("stats")["total_connections_received"])


class PrivatePostgres(PrivateServer):
    """A PostgreSQL cluster of its own (``initdb`` as the ``postgres`` user when run as root),
    started and stopped with ``pg_ctl``; ``kill`` SIGKILLs the postmaster (crash recovery
    on the next start)."""

    scheme = "postgresql"

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if not versions:
            pytest.fail("PostgreSQL is not installed: run scripts/services.sh")
        self.bin = versions[-1].parent
        # a directory of its own that the postgres user can reach (pytest's are root's, 0700)
        self.home = Path(tempfile.mkdtemp(prefix="bbpg-"))
        if os.geteuid() == 0:
            shutil.chown(self.home, "postgres", "postgres")
        self.data = self.home / "data"
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def _run(self, tool: str, *args: str) -> None:
        argv = [str(self.bin / tool), *args]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        subprocess.run(argv, check=True, capture_output=True, timeout=120)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.home} -c listen_addresses=127.0.0.1 -c max_connections=200 -c log_connections=on"
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.home / "pg.log"), "-w", "start")

    def _pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def kill(self) -> None:
        pid = self._pid()
        os.kill(pid, signal.SIGKILL)
        eventually(lambda: not _alive(pid), what="the postmaster to die")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.CalledProcessError):
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def connections_received(self) -> int:
        """The ``connection received`` lines (``log_connections``) since the last start."""
        log = (self.home / "pg.log").read_text(errors="replace")
        since_start = log.rsplit("database system is ready to accept connections", 1)[-1]
        return since_start.count("connection received:")

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


SERVERS: dict[str, Callable[[Path], PrivateServer]] = {"redis": PrivateRedis, "postgresql": PrivatePostgres}


class Refuser:
    """While a server is down, something on its port that accepts each connection and
    closes it at once, counting them: how hard clients knock while the server is gone."""

    def __init__(self, port: int) -> None:
        self.count = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(512)
        self.sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.count += 1
            conn.close()

    def close(self) -> int:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()
        return self.count
