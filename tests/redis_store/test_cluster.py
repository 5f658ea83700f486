"""The Redis store on a Redis Cluster (``store/redis/connection.py``, Redis Cluster), on
private cluster nodes. A store opened on a node that does not serve its prefix's slot
reconnects to the one that does (and passes the whole conformance suite that way); after
a resharding moves the slot, the next call follows it (the script sent again there, the
function library loaded there), and a blocking enqueue hands over to the async path,
which follows; after a failover, the store finds the new primary through another node
it knows."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis

from backbeat.errors import StoreError
from backbeat.store import open_store
from backbeat.store.redis.store import RedisStore
from backbeat.testing.conformance import T0, StoreConformance, new_job
from backbeat.testing.conformance.helpers import claim, outcome
from backbeat.types import JobState, Outcome
from tests.faults.servers import PrivateRedis
from tests.integration.conftest import eventually
from tests.ports import free_port

SLOTS = 16384


def cmd(client: redis.Redis, *args: Any) -> Any:
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


class ClusterNode(PrivateRedis):
    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.port = free_port(also=10_000)  # and its cluster bus port
        self.argv[self.argv.index("--port") + 1] = str(self.port)
        self.argv += ["--cluster-enabled", "yes", "--cluster-config-file", str(directory / "nodes.conf")]
        self.argv += ["--cluster-node-timeout", "1000"]  # a failed primary is noticed after 1 s
        self._client: redis.Redis | None = None

    def client(self) -> redis.Redis:
        """This node's admin client (one, made on first use; closed with the node)."""
        if self._client is None:
            self._client = redis.Redis(port=self.port, decode_responses=True)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        super().close()


@contextmanager
def cluster(tmp: pytest.TempPathFactory, primaries: int, replicas: int = 0) -> Iterator[list[ClusterNode]]:
    """``primaries`` nodes serving equal ranges of the slots, in order, then ``replicas``
    replicas of the first."""
    nodes = [ClusterNode(tmp.mktemp("cluster-node")) for _ in range(primaries + replicas)]
    try:
        for node in nodes:
            node.start()
        clients = [n.client() for n in nodes]
        for i in range(primaries):
            cmd(clients[i], "CLUSTER ADDSLOTSRANGE", *slots_of(i, primaries))
        for node in nodes[1:]:
            cmd(clients[0], "CLUSTER MEET", "127.0.0.1", node.port)
        eventually(
            lambda: all(int(cmd(c, "CLUSTER INFO")["cluster_known_nodes"]) == len(nodes) for c in clients),
            what="every node to know the others",
        )
        first = cmd(clients[0], "CLUSTER MYID")
        for client in clients[primaries:]:
            cmd(client, "CLUSTER REPLICATE", first)
        eventually(
            lambda: (
                all(cmd(c, "CLUSTER INFO")["cluster_state"] == "ok" for c in clients)
                and all(c.info("replication")["master_link_status"] == "up" for c in clients[primaries:])
            ),
            what="the cluster to be up",
        )
        yield nodes
    finally:
        for node in nodes:
            node.close()


def slots_of(i: int, primaries: int) -> tuple[int, int]:
    return i * SLOTS // primaries, (i + 1) * SLOTS // primaries - 1


def prefix_on(i: int, nodes: list[ClusterNode], primaries: int) -> str:
    """A fresh prefix whose slot primary ``i`` serves."""
    first, last = slots_of(i, primaries)
    while True:
        prefix = f"bbtest-{secrets.token_hex(4)}"
        if first <= int(cmd(nodes[0].client(), "CLUSTER KEYSLOT", "{" + prefix + "}:meta")) <= last:
            return prefix


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ClusterNode]]:
    """Two primaries, each serving half the slots."""
    with cluster(tmp_path_factory, 2) as nodes:
        yield nodes


def move_slot(prefix: str, source: ClusterNode, target: ClusterNode) -> None:
    """Reshard: migrate the prefix's slot, with its keys, from ``source`` to ``target``."""
    src, dst = source.client(), target.client()
    slot = int(cmd(src, "CLUSTER KEYSLOT", "{" + prefix + "}:meta"))
    src_id, dst_id = cmd(src, "CLUSTER MYID"), cmd(dst, "CLUSTER MYID")
    cmd(dst, "CLUSTER SETSLOT", slot, "IMPORTING", src_id)
    cmd(src, "CLUSTER SETSLOT", slot, "MIGRATING", dst_id)
    while keys := cmd(src, "CLUSTER GETKEYSINSLOT", slot, 100):
        cmd(src, "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
    for client in (dst, src):
        cmd(client, "CLUSTER SETSLOT", slot, "NODE", dst_id)


@pytest.fixture
async def opened(nodes: list[ClusterNode]) -> AsyncIterator[tuple[RedisStore, str]]:
    """A store whose slot node 0 serves, opened through node 1."""
    prefix = prefix_on(0, nodes, 2)
    store = open_store(f"redis://127.0.0.1:{nodes[1].port}/0?prefix={prefix}")
    assert isinstance(store, RedisStore)
    await store.open()
    try:
        yield store, prefix
    finally:
        await store.close()


async def test_a_store_opened_on_another_node_reconnects_to_its_own(
    nodes: list[ClusterNode], opened: tuple[RedisStore, str]
) -> None:
    store, prefix = opened
    job = new_job()
    await store.job_enqueue([job], now=T0)
    [running] = await store.job_claim(claim(), now=T0)
    assert running.id == job.id
    assert await store.job_ack([outcome(running, Outcome.SUCCEEDED, result="1")], now=T0 + 1) == []
    assert (await store.job_get(job.id)).state is JobState.SUCCEEDED
    assert nodes[0].client().exists("{" + prefix + "}:job:" + job.id)


async def test_a_resharded_store_follows_its_slot(nodes: list[ClusterNode], opened: tuple[RedisStore, str]) -> None:
    store, prefix = opened
    jobs = [new_job() for _ in range(5)]
    await store.job_enqueue(jobs[:2], now=T0)  # on node 0
    move_slot(prefix, nodes[0], nodes[1])
    [written] = await store.job_enqueue([jobs[2]], now=T0)  # MOVED: followed, sent again on node 1
    assert written.created
    assert store.job_enqueue_blocking([jobs[3]], now=T0) is not None  # a blocking client, on node 1
    move_slot(prefix, nodes[1], nodes[0])
    assert store.job_enqueue_blocking([jobs[4]], now=T0) is None  # MOVED: over to the async path
    await store.job_enqueue([jobs[4]], now=T0)  # which follows to node 0
    assert [j.id for j in await store.job_claim(claim(), now=T0)] == [j.id for j in jobs]
    assert all(nodes[0].client().exists("{" + prefix + "}:job:" + j.id) for j in jobs)


class TestRedisClusterStore(StoreConformance):
    """The whole conformance suite through a node that does not serve the store's slot."""

    @pytest.fixture
    def store_url(self, nodes: list[ClusterNode]) -> str:
        return f"redis://127.0.0.1:{nodes[1].port}/0?prefix={prefix_on(0, nodes, 2)}"


@pytest.mark.parametrize("via", [1, 0], ids=["url-names-another-node", "url-names-the-primary"])
async def test_a_failed_over_store_finds_the_new_primary(tmp_path_factory: pytest.TempPathFactory, via: int) -> None:
    """Three primaries (a failover needs a majority of them), a replica of the first, which
    serves the store. The first dies and the replica takes over; the store finds it through
    another node it knows: the URL's (``via`` 1), or one ``CLUSTER SLOTS`` listed when it
    opened, when the URL names the dead primary itself (``via`` 0)."""
    with cluster(tmp_path_factory, 3, replicas=1) as nodes:
        prefix = prefix_on(0, nodes, 3)
        store = open_store(f"redis://127.0.0.1:{nodes[via].port}/0?prefix={prefix}")
        try:
            jobs = [new_job() for _ in range(2)]
            await store.job_enqueue(jobs, now=T0)
            assert cmd(nodes[0].client(), "WAIT", 1, 10_000) == 1  # the replica has them
            nodes[0].kill()
            eventually(lambda: cmd(nodes[3].client(), "ROLE")[0] == "master", what="the replica to take over")

            async def claimed() -> list[str]:
                for _ in range(600):
                    try:
                        return [j.id for j in await store.job_claim(claim(), now=T0)]
                    except StoreError:
                        await asyncio.sleep(0.05)  # the reconnect gate's backoff, then the new primary
                raise AssertionError("the store never reached the new primary")

            assert await claimed() == [j.id for j in jobs]
        finally:
            await store.close()
