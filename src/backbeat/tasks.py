"""Tasks: functions declared with ``@app.task``, enqueued as jobs, run by workers."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from backbeat.config import MAX_NAME, check_queue_name, check_text, seconds
from backbeat.errors import ConfigError, EnqueueError, TaskDefinitionError
from backbeat.jobs import RESERVED_OPTIONS, Job, build_job, many_jobs
from backbeat.ratelimits import bucket_id, template_fields
from backbeat.secrets import Keyring, open_arguments, secret_names
from backbeat.serialization import decode_payload
from backbeat.types import NewJob, TaskInfo

if TYPE_CHECKING:
    from backbeat.app import App

P = ParamSpec("P")
R = TypeVar("R")
FITS_KEPT = 256
"""Call shapes a task remembers verdicts for (``Task.fits``, ``Task.check_arguments``);
past that it binds every time."""


def default_name(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


class Task(Generic[P, R]):
    """A declared task. Calling it runs the function here and now; ``enqueue`` makes a job.

    ``enqueue`` takes the function's own arguments plus the reserved options ``delay``,
    ``at``, ``dedup_key``, ``priority`` and ``queue``, and ``connection`` (your open
    psycopg transaction on a PostgreSQL store: the job is written in it, see
    ``docs/postgres.md``).
    """

    def __init__(
        self,
        app: App,
        fn: Callable[P, R],
        *,
        name: str | None,
        queue: str,
        retries: int,
        timeout: float | timedelta | None,
        priority: int,
        rate_limit: str | None = None,
        secret: Sequence[str] = (),
        handles: str | None = None,
    ) -> None:
        if not callable(fn):
            raise TaskDefinitionError(f"@app.task decorates a function, got {fn!r}")
        self.app = app
        self.fn = fn
        self.name = check_text(
            name if name is not None else default_name(fn), "task name", limit=MAX_NAME, error=TaskDefinitionError
        )
        if not self.name.strip():
            raise TaskDefinitionError(f"task name must not be blank, got {self.name!r}")
        self.is_async = inspect.iscoroutinefunction(fn)
        self.signature = inspect.signature(fn)
        self._verdicts: dict[tuple[bool, int, frozenset[str]], str | None] = {}
        """The verdicts of ``fits`` and ``check_arguments`` (``strict``) by call shape: why
        the call is refused, or ``None``."""
        clashes = [p for p in self.signature.parameters if p in RESERVED_OPTIONS]
        if clashes:
            raise TaskDefinitionError(
                f"task {self.name!r}: parameter {clashes[0]!r} clashes with the enqueue option {clashes[0]}= "
                f"(reserved: {', '.join(RESERVED_OPTIONS)}); rename the parameter"
            )
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise TaskDefinitionError(f"task {self.name!r}: retries must be an integer >= 0, got {retries!r}")
        try:
            check_queue_name(queue)
            limit = None if timeout is None else seconds(timeout, f"task {self.name!r}: timeout", allow_zero=False)
        except ConfigError as exc:
            raise TaskDefinitionError(str(exc)) from None
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise TaskDefinitionError(f"task {self.name!r}: priority must be an integer, got {priority!r}")
        self.info = TaskInfo(
            name=self.name,
            queue=queue,
            max_attempts=retries + 1,
            timeout=limit,
            priority=priority,
            secret=secret_names(secret, f"task {self.name!r}") if handles else self._secret_parameters(secret),
            handles=handles,
        )
        self.rate_limit = rate_limit
        """Key template naming the bucket each job starts under (``"twitter:{token}"``)."""
        self.limit_name: str | None = None
        if rate_limit is not None:
            if not isinstance(rate_limit, str) or not rate_limit:
                raise TaskDefinitionError(f"task {self.name!r}: rate_limit must be a key template, got {rate_limit!r}")
            self.limit_name = template_fields(rate_limit, self.name, set(self.signature.parameters))
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def _secret_parameters(self, secret: Sequence[str]) -> tuple[str, ...]:
        names = secret_names(secret, f"task {self.name!r}")
        for name in names:
            parameter = self.signature.parameters.get(name)
            if parameter is None:
                raise TaskDefinitionError(
                    f"task {self.name!r}: secret names {name!r}, which is not a parameter of the task "
                    f"({', '.join(self.signature.parameters) or 'none'})"
                )
            if parameter.kind not in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
                raise TaskDefinitionError(
                    f"task {self.name!r}: secret parameter {name!r} is {parameter.kind.description}; a secret "
                    "must be a named parameter that can be passed by keyword"
                )
        return names

    def check_call(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> inspect.BoundArguments:
        """The arguments bound to the function; ``EnqueueError`` if it could not be called with them."""
        try:
            return self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise EnqueueError(f"task {self.name!r}: {exc}") from None

    def fits(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """``check_call`` without the bound arguments, for a worker about to run a job."""
        self._judge(False, args, kwargs)

    def check_arguments(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """Raise ``EnqueueError`` if the function could not be called with these arguments,
        or if a secret parameter is given positionally (only named values are sealed)."""
        self._judge(True, args, kwargs)

    def _judge(self, strict: bool, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """Both checks depend only on the number of positional arguments and the keyword
        names, so each verdict is remembered per such shape (binding was about a third of
        the task thread's work to prepare a job, in a profile of a draining worker, and a
        sixth of the producer's before it sends an enqueue)."""
        shape = (strict, len(args), frozenset(kwargs))
        try:
            why = self._verdicts[shape]
        except KeyError:
            try:
                (self._check_strictly if strict else self.check_call)(args, kwargs)
                why = None
            except EnqueueError as exc:
                why = str(exc)
            if len(self._verdicts) < FITS_KEPT:
                self._verdicts[shape] = why
        if why is not None:
            raise EnqueueError(why)

    def _check_strictly(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        bound = self.check_call(args, kwargs)
        if self.info.handles is None:
            positional = [n for n in self.info.secret if n in bound.arguments and n not in kwargs]
            if positional:
                raise EnqueueError(
                    f"task {self.name!r}: pass the secret argument {positional[0]!r} by keyword "
                    f"({positional[0]}=...): only named arguments are sealed"
                )

    def arguments(self, payload: str, keys: Keyring) -> tuple[list[Any], dict[str, Any], list[str]]:
        """A job's arguments as the function takes them, its secrets opened, and the opened
        values (to scrub from what is shown). Raises ``ValueError`` (``SecretError``) if
        they cannot be read."""
        args, kwargs = decode_payload(payload)
        kwargs, opened = open_arguments(self.info, kwargs, keys)
        return args, kwargs, opened

    def bucket(self, args: Sequence[Any], kwargs: Mapping[str, Any], secret: str | None) -> str | None:
        """The rate-limit bucket a job with these arguments starts under, if any."""
        if self.rate_limit is None:
            return None
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return bucket_id(self.rate_limit, bound.arguments, secret)

    def _new_job(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[NewJob, object | None]:
        """The validated job (the options taken out of ``kwargs``) and the ``connection=`` given."""
        options = {key: kwargs.pop(key) for key in RESERVED_OPTIONS if key in kwargs}
        connection = options.pop("connection", None)
        self.check_arguments(args, kwargs)
        app = self.app
        return build_job(self.info, args, kwargs, settings=app.settings, now=app.clock.now(), **options), connection

    async def aenqueue(self, *args: Any, **kwargs: Any) -> Job:
        """Enqueue a job of this task; see the class docstring for the options."""
        new, connection = self._new_job(args, kwargs)
        job = await self.app.client.asubmit(new, connection=connection)
        if self.app.eager:
            await self.app.arun_until_idle()
        return job

    def enqueue(self, *args: Any, **kwargs: Any) -> Job:
        if self.app.eager or "connection" in kwargs:
            return self.app.client.sync(self.aenqueue, *args, **kwargs)
        new, _ = self._new_job(args, kwargs)
        return self.app.client.submit(new)

    def _new_jobs(self, calls: Iterable[Any], options: dict[str, Any]) -> tuple[list[NewJob], object | None]:
        """``enqueue_many``'s validated jobs (every one is checked before any is written)
        and the ``connection=`` given."""
        unknown = sorted(set(options) - set(RESERVED_OPTIONS))
        if unknown:
            raise EnqueueError(
                f"task {self.name!r}: enqueue_many takes the calls, then only the options "
                f"{', '.join(RESERVED_OPTIONS)}; got {', '.join(unknown)} (give a job's arguments in its call)"
            )
        connection = options.pop("connection", None)
        jobs = many_jobs(f"task {self.name!r}", calls, options, lambda args, kwargs: self._new_job(args, kwargs)[0])
        return jobs, connection

    async def aenqueue_many(self, calls: Iterable[Any], /, **options: Any) -> list[Job]:
        """Enqueue one job per call; see ``enqueue_many``."""
        jobs, connection = self._new_jobs(calls, options)
        handles = await self.app.client.asubmit_many(jobs, connection=connection)
        if self.app.eager:
            await self.app.arun_until_idle()
        return handles

    def enqueue_many(self, calls: Iterable[Any], /, **options: Any) -> list[Job]:
        """Enqueue one job per call, in far fewer round trips than a loop of ``enqueue``.

        A call is a dict of keyword arguments (it may also carry the options of its own job:
        ``dedup_key``, ``delay``, ``at``, ``priority``, ``queue``) or a tuple of positional
        arguments. ``options`` apply to every call that does not set its own. Every call is
        checked before any job is written (an ``EnqueueError`` names the bad call); the jobs
        are then written ``Store.enqueue_batch`` at a time (500; 100 on Redis, where a batch
        holds the server), each batch all or none. Returns the handles in call order
        (``created`` is False where a dedup key was taken). A store error part way leaves
        the batches before it written: give the calls dedup keys to make a retry safe."""
        if self.app.eager or "connection" in options:
            return self.app.client.sync(self.aenqueue_many, calls, **options)
        jobs, _ = self._new_jobs(calls, options)
        return self.app.client.submit_many(jobs)
