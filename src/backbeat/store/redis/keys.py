"""The Redis store's key layout. Every script in ``scripts/`` opens with the keys it touches.

``P`` is ``{prefix}``: the prefix from the URL (``?prefix=``, default ``backbeat``) in
braces, which makes it the Redis Cluster *hash tag* of every key below::

    P:meta                           hash    schema_version
    P:job:<id>                       hash    one job: the JobRecord fields that are not None
                                             (floats as Python repr(), cancel_requested "1")
    P:ready:<queue>,<prio>,<task>    zset    a *lane*: the queued jobs of one (queue,
                                             priority, task), score order_at, member id
    P:lanes:<queue>                  zset    the queue's non-empty lanes: member
                                             "<prio>,<task>", score -prio
    P:sched:<queue>                  zset    scheduled jobs, score run_at
    P:running                        zset    running jobs, score lease_expires_at
    P:done:<state>                   zset    succeeded | dead | cancelled jobs, score finished_at
    P:ids:<state>                    zset    every job in a state, score 0 (ordered by id)
    P:counts                         hash    "<state>,<queue>,<task>" -> number of jobs
    P:dedup                          hash    dedup key -> id of the live job holding it
    P:queues                         set     every queue that had a job or was paused
    P:paused                         hash    paused queue -> paused_at
    P:wake                           stream  one entry per write that may bring work
    P:queued:<queue>                 zset    queued jobs, score run_at (job_backlog)
    P:fired                          hash    "<fire_at>|<schedule key>" -> job id: the
                                             uniqueness of a schedule's occurrence
    P:worker:<id>                    hash    a registered worker
    P:park:<id>                      hash    a parked worker (its last claim found too
                                             little): until, lease, token, queues, t:<task>
    P:parked:<queue>                 zset    parked workers of a queue, score parked-until
    P:inbox:<id>                     stream  jobs enqueue.lua leased to a parked worker:
                                             "@id", the id, then the job's fields
    P:workers                        zset    worker ids, score last heartbeat
    P:tasks                          hash    task name -> JSON TaskInfo
    P:state:<name>                   hash    published state: value, updated_at

    schedules, SLA (scripts/lib_schedules.lua has the details)
    P:schedule:<key>                 hash    one schedule: definition and run state
    P:schedules                      zset    every key, score 0 (listing by key)
    P:schedules-due                  zset    key -> next_at, of those that may fire
    P:schedules-runs                 hash    key -> job id of its run in flight
    P:sla-active, P:sla-paused       zset    key -> deadline_at, SLA schedules (sla_list)
    P:sla-watch                      zset    key -> deadline_at, not paused nor in breach
    P:breach:<id>                    hash    one breach; P:breach-seq numbers them
    P:breach-open                    hash    key -> ids of its open breaches
    P:breach-ended, P:breach-new     zset    id -> ended_at: closed / not yet announced
    P:blog:<key>                     zset    id -> started_at, one schedule's breaches

    the decision log (scripts/decision_append.lua)
    P:decisions                      hash    entry number -> JSON entry; P:decision-seq
    P:dlog:<key>, P:dkind:<kind>     zset    number -> at, per schedule / per kind
    P:decisions-at                   zset    number -> at, every entry (retention)

    events (scripts/lib_events.lua) and rate-limit buckets (scripts/bucket_acquire.lua)
    P:event:<id>                     hash    one event
    P:evids:<state>                  zset    event ids in a state, score 0 (by id)
    P:events-pending                 zset    pending ids by received_at
    P:events-settled                 zset    settled ids by received_at (retention)
    P:blocked                        hash    bucket -> blocked until
    P:starts:<bucket>                zset    grants in the window, score the time; P:seq
    P:holders:<bucket>               set     running jobs holding the bucket

Each job is in exactly one state structure (a lane, ``sched``, ``running`` or ``done``),
in ``ids:<state>`` and in one ``counts`` field; the scripts move it between them
atomically (``lib.lua``: ``unindex``/``index``/``move``). Keys whose last part is a
name (a queue, a schedule key, a bucket) start with a word used for nothing else, so no
name can make one key collide with another.

Why this shape
--------------
* **Dispatch order** ``priority DESC, order_at ASC, id ASC`` must be exact, and a double
  has no room for a priority on top of a microsecond timestamp (a composite score would
  round one of them). So one zset per priority ("lane"), scored by order_at: Redis breaks
  score ties by comparing members bytewise, which is the id order. A claim walks the
  priorities present, highest first, merging the lanes of each. Lanes are also per
  *task*: a worker that knows only some tasks of a shared queue never reads past the
  others' jobs (with one lane per priority it would rescan them on every claim).
  The cost: a claim over many tasks merges many lanes (one ZRANGE per lane per claim).
* **Hash tags.** Every key shares one tag, so every script's keys are in one slot, as
  Redis Cluster requires, and a cluster node refuses a function's access to any key
  outside it (``scripts.py``). The limit: one store lives on one shard (one core's worth of Redis).
  Per-queue tags would spread queues over shards but break what must be atomic across
  queues (one dispatch order over a worker's queues, dedup, counters); for more than
  one shard gives, run separate stores (prefixes). On a cluster the URL may name any
  node: the ``MOVED`` reply names the node that serves the slot, and the store
  reconnects there, also after a resharding or a failover (``connection.py``).
* Scripts derive most keys from the prefix instead of receiving them all in ``KEYS``
  (a claim discovers its lanes as it runs); ``KEYS[1]`` is ``P:meta``, which routes
  the script to the slot. Queue names never contain ``,`` (``config.check_queue_name``),
  so ``<queue>,<prio>,<task>`` parses back unambiguously.
* **Counts** are maintained counters, so ``job_counts`` is one HGETALL however many
  jobs there are; ``job_finished_since`` is a ZCOUNT per final state.
* **Wake-ups** are a stream, not pub/sub: a waiter blocks in ``XREAD`` after the id
  of the newest entry it has seen (returned by every claim), so a write that lands
  between a claim that found nothing and the wait is never missed, and a busy worker
  accumulates nothing (pub/sub would buffer every message for it, or drop it).
* **Hand-off.** A worker whose claim found too little is *parked*; the enqueue of a job
  it could claim, when nothing else is claimable for it, leases the job to it and adds it
  to the worker's inbox, which the worker's ``XREAD`` also watches. An idle worker then
  starts a job after one wake-up instead of a wake-up, a claim and a second wake-up.
  The hand-off is single use, a parking lasts two ``idle_poll`` periods unless the
  worker's next claim renews it, and a job handed over and not yet received takes the
  room of the worker's next claim (which then does not park it again). So a worker that
  died parked is handed at most one job, rescued once its lease expires. The job carries
  a ``handed`` field until a claim or unpark of its worker delivers the inbox entry, or
  its heartbeat renews the lease (so the server knows the worker got it); a rescue of a
  job still marked does not count the attempt, which never began. (Had the worker started
  the job and died before its next claim or heartbeat, the job runs once more than its
  attempts say; a rescued job is never handed over again, so at most once.) A worker's
  claims delete the inbox entries it has received. A worker parks when it has room for
  more jobs, prefetch included (``WorkerSettings.prefetch_window``), so a job handed to a
  worker whose slots are busy waits behind its prefetched ones, as a job it had claimed
  would. Each single-job enqueue while workers are parked reads, per
  candidate worker, the lanes of its queues (``claimable`` in ``enqueue.lua``).

Memory
------
Measured on Redis 7.0.15 with ``benchmarks/redis_memory.py`` (50,000 jobs of a 21-character
task name, payload ``{"args":[],"kwargs":{"user_id":12345}}``; sum of ``MEMORY USAGE``
over the store's keys, ``INFO memory`` growth in brackets):

* queued: 832 B/job (881 B): the job hash, 424 B as a listpack, plus its lane, its
  ``queued`` entry (136 B: the backlog's index by run_at) and its id-index entry;
* scheduled: 696 B/job (737 B): the hash, in ``sched`` instead of a lane;
* succeeded: 760 B/job (797 B): hash 488 B (result, start, worker, finish time);
* queued with a 200-byte payload: 1,511 B/job, because a value over
  ``hash-max-listpack-value`` (64 bytes by default) turns the hash into a hashtable
  (the last measurement without ``queued``: 1,376 B/job, 824 B/job on a server with
  ``hash-max-listpack-value 1024``).
* a job fired by a schedule also has a ``fired`` field (fire time and key) until it is
  pruned (not measured separately).

So about 0.8 GB per million waiting jobs with small payloads; set
``hash-max-listpack-value`` to above your usual payload size (reading a listpack hash of
~15 fields stays cheap) when payloads are larger. Finished jobs are pruned on the
retention (``job_prune``), so their share stays bounded.

Internal module.
"""

from __future__ import annotations

from dataclasses import dataclass

from backbeat.types import JobState

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names for one prefix (the Python side: reads and script anchors)."""

    prefix: str

    @property
    def tag(self) -> str:
        return "{" + self.prefix + "}"

    @property
    def meta(self) -> str:
        return f"{self.tag}:meta"

    def job(self, job_id: str) -> str:
        return f"{self.tag}:job:{job_id}"

    def sched(self, queue: str) -> str:
        return f"{self.tag}:sched:{queue}"

    def ids(self, state: JobState) -> str:
        return f"{self.tag}:ids:{state.value}"

    def done(self, state: JobState) -> str:
        return f"{self.tag}:done:{state.value}"

    def worker(self, worker_id: str) -> str:
        return f"{self.tag}:worker:{worker_id}"

    def inbox(self, worker_id: str) -> str:
        return f"{self.tag}:inbox:{worker_id}"

    @property
    def counts(self) -> str:
        return f"{self.tag}:counts"

    @property
    def queues(self) -> str:
        return f"{self.tag}:queues"

    @property
    def paused(self) -> str:
        return f"{self.tag}:paused"

    @property
    def wake(self) -> str:
        return f"{self.tag}:wake"

    @property
    def workers(self) -> str:
        return f"{self.tag}:workers"

    @property
    def tasks(self) -> str:
        return f"{self.tag}:tasks"

    def queued(self, queue: str) -> str:
        return f"{self.tag}:queued:{queue}"

    def state(self, name: str) -> str:
        return f"{self.tag}:state:{name}"

    # -- schedules, SLA, decisions --

    def schedule(self, key: str) -> str:
        return f"{self.tag}:schedule:{key}"

    @property
    def schedules(self) -> str:
        return f"{self.tag}:schedules"

    @property
    def schedules_due(self) -> str:
        return f"{self.tag}:schedules-due"

    @property
    def schedules_runs(self) -> str:
        return f"{self.tag}:schedules-runs"

    @property
    def sla_active(self) -> str:
        return f"{self.tag}:sla-active"

    @property
    def sla_paused(self) -> str:
        return f"{self.tag}:sla-paused"

    def breach(self, breach_id: str) -> str:
        return f"{self.tag}:breach:{breach_id}"

    @property
    def breach_open(self) -> str:
        return f"{self.tag}:breach-open"

    @property
    def breach_ended(self) -> str:
        return f"{self.tag}:breach-ended"

    def blog(self, key: str) -> str:
        return f"{self.tag}:blog:{key}"

    @property
    def decisions(self) -> str:
        return f"{self.tag}:decisions"

    def dlog(self, key: str) -> str:
        return f"{self.tag}:dlog:{key}"

    def dkind(self, kind: str) -> str:
        return f"{self.tag}:dkind:{kind}"

    # -- events, buckets --

    def event(self, event_id: str) -> str:
        return f"{self.tag}:event:{event_id}"

    def evids(self, state: str) -> str:
        return f"{self.tag}:evids:{state}"

    @property
    def events_pending(self) -> str:
        return f"{self.tag}:events-pending"

    @property
    def blocked(self) -> str:
        return f"{self.tag}:blocked"

    def starts(self, bucket: str) -> str:
        return f"{self.tag}:starts:{bucket}"

    def holders(self, bucket: str) -> str:
        return f"{self.tag}:holders:{bucket}"

    @property
    def pattern(self) -> str:
        """A SCAN pattern matching every key of this store (no glob characters in a prefix)."""
        return f"{self.tag}:*"
