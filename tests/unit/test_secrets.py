"""Secrets at rest: keys and sealing, secret task arguments in jobs and schedules, rotation,
redaction, scrubbed errors, and the errors when a key is missing or wrong."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
from typing import Any

import pytest

from backbeat import App, Client
from backbeat import secrets as sec
from backbeat.config import Settings, keys_from_env
from backbeat.errors import ConfigError, EnqueueError, SecretError, TaskDefinitionError
from backbeat.runtime.scheduler import Scheduler
from backbeat.schedule_manager import describe
from backbeat.shapes import job as job_shape
from backbeat.shapes import schedule as schedule_shape
from backbeat.testing import ManualClock, run_until_idle
from backbeat.types import JobFilter, JobRecord, JobState, TaskInfo, WorkerInfo

KEY = "k" * 16 + "-current-secret-key"
OLD = "o" * 16 + "-previous-secret-key"
TOKEN = "twitter-token-abc123"


def make_app(name: str, **settings: Any) -> App:
    settings.setdefault("secret_key", KEY)
    return App(f"memory://{name}", clock=ManualClock(1_800_000_000.0), default_retries=0, **settings)


def stored_jobs(app: App) -> list[JobRecord]:
    async def read() -> list[JobRecord]:
        return await (await app.client.astore()).job_list(JobFilter(limit=1000))

    return app.client.sync(read)


def declare_poll(app: App, seen: list[Any]) -> Any:
    @app.task(name="twitter.poll", secret=("token",))
    def poll(user_id: int, token: str) -> None:
        seen.append((user_id, token))

    return poll


# -- keys and sealing ----------------------------------------------------------------------


def test_a_sealed_value_opens_only_where_it_was_sealed_for() -> None:
    keys = sec.Keyring([KEY])
    for value in ("abc", 12, {"a": [1, None]}, ["x"], None, True):
        sealed = keys.seal(value, aad="task:t\x00token", what="test")
        assert sealed.startswith(f"bbsecret:1:{keys.current}:") and json.dumps(value) not in sealed[20:]
        assert keys.reveal(sealed, aad="task:t\x00token", what="test") == value
    sealed = keys.seal("abc", aad="task:t\x00token", what="test")
    assert sealed != keys.seal("abc", aad="task:t\x00token", what="test")  # a fresh nonce each time
    with pytest.raises(SecretError, match=r"does not open with key id .*altered, or sealed for another task or field"):
        keys.reveal(sealed, aad="task:other\x00token", what="secret 'token'")
    tampered = sealed[:-3] + ("A" if sealed[-3] != "A" else "B") + sealed[-2:]
    with pytest.raises(SecretError, match="does not open"):
        keys.reveal(tampered, aad="task:t\x00token", what="secret 'token'")


def test_key_ids_name_keys_without_revealing_them() -> None:
    a, b = sec.Keyring([KEY]), sec.Keyring([KEY])
    assert a.current == b.current and len(a.current or "") == 8
    assert sec.Keyring([OLD]).current != a.current
    assert KEY not in repr(a) and KEY not in repr(Settings(secret_key=KEY))


def test_rotation_seals_with_the_first_key_and_opens_with_any() -> None:
    old = sec.Keyring([OLD])
    sealed = old.seal("abc", aad="x", what="test")
    rotated = sec.Keyring([KEY, OLD])
    assert rotated.reveal(sealed, aad="x", what="test") == "abc"
    assert rotated.seal("abc", aad="x", what="test").startswith(f"bbsecret:1:{sec.Keyring([KEY]).current}:")
    with pytest.raises(SecretError, match=rf"sealed with key id {old.current}, which is not configured"):
        sec.Keyring([KEY]).reveal(sealed, aad="x", what="secret 'token'")


def test_missing_and_bad_keys_are_clear_errors() -> None:
    with pytest.raises(SecretError, match="task 't' declares secret arguments: set BACKBEAT_SECRET_KEY"):
        sec.Keyring([]).seal("abc", aad="x", what="task 't' declares secret arguments")
    with pytest.raises(SecretError, match="BACKBEAT_SECRET_KEY is 5 characters: a key must be at least 16"):
        sec.Keyring(["short"]).seal("abc", aad="x", what="t")
    with pytest.raises(SecretError, match="previous secret key #1 is given twice"):
        sec.Keyring([KEY, KEY]).seal("abc", aad="x", what="t")
    assert len(sec.keygen()) >= 43 and sec.keygen() != sec.keygen()


def test_keys_from_the_environment() -> None:
    assert keys_from_env({"BACKBEAT_SECRET_KEY": KEY}, "secret") == {"secret_key": KEY}
    assert keys_from_env({"BACKBEAT_SECRET_KEYS": f"{KEY}, {OLD}"}, "secret") == {
        "secret_key": KEY,
        "previous_secret_keys": (OLD,),
    }
    with pytest.raises(ConfigError, match="both BACKBEAT_SECRET_KEY and BACKBEAT_SECRET_KEYS are set"):
        keys_from_env({"BACKBEAT_SECRET_KEY": KEY, "BACKBEAT_SECRET_KEYS": KEY}, "secret")
    with pytest.raises(ConfigError, match="BACKBEAT_SECRET_KEYS has an empty key"):
        keys_from_env({"BACKBEAT_SECRET_KEYS": f"{KEY},,{OLD}"}, "secret")
    settings = Settings.build(env={"BACKBEAT_SECRET_KEYS": f"{KEY},{OLD}"})
    assert sec.keyring(settings).ids == sec.Keyring([KEY, OLD]).ids
    with pytest.raises(ConfigError, match="previous_secret_keys need a current secret_key"):
        Settings(previous_secret_keys=(OLD,))


def test_redaction_and_scrubbing() -> None:
    sealed = sec.Keyring([KEY]).seal("abc", aad="x", what="t")
    assert sec.redact({"a": [sealed, "plain"], "b": sealed, "n": 1}) == {"a": ["***", "plain"], "b": "***", "n": 1}
    assert sec.redact_text(f'payload \'{{"token":"{sealed}"}}\'') == 'payload \'{"token":"***"}\''
    assert sec.scrub(f"bad token {TOKEN} (x)", [TOKEN, "ab"]) == "bad token *** (x)"


# -- declaring -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        (("tokn",), "secret names 'tokn', which is not a parameter of the task \\(user_id, token, rest, extra\\)"),
        ("token", 'secret must be a tuple of names, e.g. secret=\\("token",\\)'),
        (("",), "secret names must be non-empty strings"),
        (("rest",), "secret parameter 'rest' is variadic positional"),
        (("extra",), "secret parameter 'extra' is variadic keyword"),
    ],
)
def test_secret_must_name_real_named_parameters(secret: Any, message: str) -> None:
    app = make_app("declare")
    with pytest.raises(TaskDefinitionError, match=message):

        @app.task(name="t", secret=secret)
        def t(user_id: int, token: str, *rest: Any, **extra: Any) -> None: ...


def test_a_positional_only_secret_is_refused() -> None:
    app = make_app("posonly")
    with pytest.raises(TaskDefinitionError, match="secret parameter 'token' is positional-only"):

        @app.task(name="t", secret=("token",))
        def t(token: str, /) -> None: ...


# -- jobs ------------------------------------------------------------------------------------


def test_a_secret_argument_is_sealed_in_the_store_and_opened_for_the_task() -> None:
    app, seen = make_app("jobs"), list[Any]()
    poll = declare_poll(app, seen)
    job = poll.enqueue(user_id=1, token=TOKEN)
    [record] = stored_jobs(app)
    assert TOKEN not in record.payload
    kwargs = json.loads(record.payload)["kwargs"]
    assert kwargs["user_id"] == 1 and sec.is_sealed(kwargs["token"])
    assert job_shape(record)["kwargs"] == {"user_id": 1, "token": "***"}
    run_until_idle(app)
    assert seen == [(1, TOKEN)]
    assert job.status() is JobState.SUCCEEDED


def test_a_secret_passed_positionally_is_refused() -> None:
    app = make_app("positional")
    poll = declare_poll(app, [])
    with pytest.raises(EnqueueError, match=r"pass the secret argument 'token' by keyword \(token=\.\.\.\)"):
        poll.enqueue(1, TOKEN)
    poll.enqueue(1, token=TOKEN)  # the rest may be positional


def test_no_key_is_an_error_at_enqueue_and_at_worker_start() -> None:
    app = make_app("nokey", secret_key=None)
    poll = declare_poll(app, [])
    with pytest.raises(
        SecretError, match=r"task 'twitter.poll' declares secret arguments \(token\): set BACKBEAT_SECRET"
    ):
        poll.enqueue(user_id=1, token=TOKEN)
    assert stored_jobs(app) == []
    with pytest.raises(
        SecretError, match=r"task 'twitter.poll' declares secret arguments \(token\): set BACKBEAT_SECRET"
    ):
        run_until_idle(app)


def test_errors_and_tracebacks_never_repeat_an_opened_secret() -> None:
    app = make_app("scrub")

    @app.task(name="t", secret=("token",))
    def t(token: str) -> None:
        raise ValueError(f"upstream refused token {token}")

    job = t.enqueue(token=TOKEN)
    run_until_idle(app)
    record = job.info()
    assert record.state is JobState.DEAD
    assert record.error == "ValueError: upstream refused token ***"
    assert record.traceback is not None and "upstream refused token ***" in record.traceback
    assert TOKEN not in record.traceback


def test_a_job_sealed_with_an_unknown_key_dies_saying_which_key() -> None:
    app = make_app("unknown", secret_key=OLD)
    poll = declare_poll(app, [])
    job = poll.enqueue(user_id=1, token=TOKEN)
    app.configure(secret_key=KEY)
    run_until_idle(app)
    record = job.info()
    assert record.state is JobState.DEAD
    assert record.error is not None and record.error.startswith("SecretError: secret 'token' of task twitter.poll")
    assert f"sealed with key id {sec.Keyring([OLD]).current}, which is not configured" in record.error
    app.configure(secret_key=KEY, previous_secret_keys=(OLD,))  # rotation: the old key still opens
    job.retry()
    run_until_idle(app)
    assert job.status() is JobState.SUCCEEDED


def register(app: App, *tasks: TaskInfo) -> None:
    """What a worker of another process writes: its tasks in the registry."""

    async def write() -> None:
        now = app.clock.now()
        info = WorkerInfo(
            id="w", host="h", pid=1, queues=("default",), concurrency=1, tasks=tasks, started_at=now, heartbeat_at=now
        )
        await (await app.client.astore()).worker_register(info)

    app.client.sync(write)


def test_enqueue_by_name_inherits_secrets_from_the_registry() -> None:
    app = make_app("by-name")
    register(app, TaskInfo(name="twitter.poll", queue="default", max_attempts=1, secret=("token",)))
    client = Client(settings=app.settings, clock=app.clock)
    client.enqueue("twitter.poll", kwargs={"user_id": 1, "token": TOKEN})
    [record] = stored_jobs(app)
    assert TOKEN not in record.payload
    with pytest.raises(EnqueueError, match="pass its arguments by keyword"):
        client.enqueue("twitter.poll", args=[1, TOKEN])
    client.close()


# -- schedules -------------------------------------------------------------------------------


def test_a_schedule_keeps_its_secret_sealed_and_its_jobs_open_it() -> None:
    app, seen = make_app("schedules"), list[Any]()
    poll = declare_poll(app, seen)
    record = app.every(20, poll, key="twitter:1", kwargs={"user_id": 1, "token": TOKEN}, sla=30)
    assert TOKEN not in record.spec.payload
    assert schedule_shape(record)["kwargs"] == {"user_id": 1, "token": "***"}
    again = app.every(20, poll, key="twitter:1", kwargs={"user_id": 1, "token": TOKEN}, sla=30)
    assert again.spec.payload == record.spec.payload  # same values: the sealing is kept, nothing changed

    assert app.client.sync(Scheduler(app).tick) == 1
    run_until_idle(app)
    assert seen == [(1, TOKEN)]
    assert all(TOKEN not in j.payload for j in stored_jobs(app))


def test_updating_a_schedule_keeps_its_secret_and_logs_no_plaintext() -> None:
    app = make_app("update")
    poll = declare_poll(app, [])
    first = app.every(20, poll, key="twitter:1", kwargs={"user_id": 1, "token": TOKEN})
    updated = app.schedules.update("twitter:1", every=60)
    assert updated.spec.payload == first.spec.payload and updated.spec.every == 60
    changed = app.schedules.update("twitter:1", kwargs={"user_id": 1, "token": "another-token-xyz"})
    assert "another-token-xyz" not in changed.spec.payload

    async def decisions() -> list[str]:
        return [d.detail for d in await (await app.client.astore()).decision_list("twitter:1", limit=10)]

    details = app.client.sync(decisions)
    assert any("payload" in d and "***" in d for d in details)
    assert not any(TOKEN in d or "another-token" in d or "bbsecret" in d for d in details)
    assert describe(changed.spec)  # the log line of a change shows no payload at all


def test_rotation_reseals_a_schedule_when_it_is_written_again() -> None:
    app = make_app("rotate", secret_key=OLD)
    poll = declare_poll(app, [])
    before = app.every(20, poll, key="twitter:1", kwargs={"user_id": 1, "token": TOKEN})
    app.configure(secret_key=KEY, previous_secret_keys=(OLD,))
    after = app.every(20, poll, key="twitter:1", kwargs={"user_id": 1, "token": TOKEN})
    new_id = sec.Keyring([KEY]).current
    assert f"bbsecret:1:{new_id}:" in after.spec.payload and after.spec.payload != before.spec.payload
    assert (
        app.every(20, poll, key="twitter:1", kwargs={"user_id": 1, "token": TOKEN}).spec.payload == after.spec.payload
    )


def test_a_schedule_file_seals_secret_arguments() -> None:
    app = make_app("yaml")
    declare_poll(app, [])
    text = "poll:\n  every: 20s\n  class: twitter.poll\n  args:\n    user_id: 1\n    token: " + TOKEN + "\n"
    app.schedules.load(text)
    [record] = app.schedules.list()
    assert TOKEN not in record.spec.payload


# -- rate limits -----------------------------------------------------------------------------


def test_rate_limit_buckets_of_secrets_are_keyed_hashes_of_the_opened_value() -> None:
    app = make_app("limits")
    app.rate_limit("twitter", limit=1, per=900)
    ran: list[str] = []

    @app.task(name="t", secret=("token",), rate_limit="twitter:{token}")
    def t(token: str, n: int) -> None:
        ran.append(token)

    t.enqueue(token=TOKEN, n=1)
    t.enqueue(token=TOKEN, n=2)  # sealed differently, same token: same bucket, so held back
    run_until_idle(app)
    assert ran == [TOKEN]
    expected = "twitter:" + hmac.new(KEY.encode(), f"twitter:{TOKEN}".encode(), hashlib.sha256).hexdigest()[:32]
    assert t.bucket((), {"token": TOKEN, "n": 1}, KEY) == expected
    assert t.bucket((), {"token": TOKEN, "n": 1}, OLD) != expected
    assert TOKEN not in expected


def test_a_declared_schedule_is_sealed_and_syncs_without_change() -> None:
    app = make_app("periodic")

    @app.periodic(every=60, key="poll-forever", kwargs={"token": TOKEN}, secret=("token",), name="poll.forever")
    def poll_forever(token: str) -> None: ...

    assert poll_forever.info.secret == ("token",)
    first = app.client.sync(app.schedules.async_declared)
    assert first.added == ["poll-forever"] and TOKEN not in app.schedules.get("poll-forever").spec.payload
    assert app.client.sync(app.schedules.async_declared).unchanged == ["poll-forever"]  # a restart changes nothing


def test_a_schedule_of_a_secret_task_needs_a_key_and_writes_nothing_without_one() -> None:
    app = make_app("schedule-no-key", secret_key=None)
    poll = declare_poll(app, [])
    with pytest.raises(
        SecretError, match=r"task 'twitter.poll' declares secret arguments \(token\): set BACKBEAT_SECRET"
    ):
        app.every(20, poll, key="twitter:1", kwargs={"user_id": 1, "token": TOKEN})
    assert app.schedules.list() == []


def test_a_keyring_without_keys_loads_no_cipher() -> None:
    """Every worker builds a keyring: with no key it must not pay for cryptography's AEAD."""
    code = (
        "import sys; from backbeat.secrets import Keyring; Keyring([]);"
        "assert 'cryptography.hazmat.primitives.ciphers.aead' not in sys.modules;"
        "Keyring(['k' * 32]); assert 'cryptography.hazmat.primitives.ciphers.aead' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
