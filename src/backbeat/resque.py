"""Reading resque-scheduler YAML, the format users bring from Resque (and the talk shows)::

    CancelAbandonedOrders:
      cron: "*/5 * * * *"
    clear_leaderboards_contributors:
      cron: "30 6 * * 1"            # may end with a zone: "30 6 * * 1 Europe/Stockholm"
      class: "ClearLeaderboards"    # the task *name*; defaults to the entry name
      queue: low
      args: contributors            # empty, a scalar, a list, or a mapping (keyword arguments)
      description: "Reset the weekly leaders"
    poll_feeds:
      every: ["30s", {first_in: "120s"}]   # or just "30s"; ":first_in" works too

backbeat's own keys may be added: ``sla``, ``tz``, ``mode``, ``jitter``, ``misfire``,
``catch_up_limit``, ``priority``. Keys that only mean something to Resque (``rails_env``,
``custom_job_class``, ``persist``) are reported as ignored. Anything else is an error.

Parsing is pure (text in, entries out); every problem is collected with the entry's name
and line, so a caller can refuse the whole file and apply nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from backbeat import cron
from backbeat.errors import BackbeatError, ScheduleError
from backbeat.schedules import parse_duration
from backbeat.types import ScheduleKind

IGNORED = frozenset({"rails_env", "custom_job_class", "persist"})
MAX_VALUES = 100_000
"""Most values (scalars, lists, mappings) a schedule file may hold, aliases expanded."""
KNOWN = frozenset(
    {
        "cron",
        "every",
        "class",
        "queue",
        "args",
        "description",
        "sla",
        "max_every",
        "tz",
        "mode",
        "jitter",
        "misfire",
        "catch_up_limit",
        "priority",
    }
)


class ScheduleFileError(BackbeatError, ValueError):
    """A schedule file with problems; ``problems`` lists each with its entry and line. Nothing was applied."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{path}: {len(problems)} problem(s), nothing applied:\n  " + "\n  ".join(problems))


@dataclass(kw_only=True)
class Entry:
    """One schedule of the file, not yet checked against tasks."""

    name: str
    line: int
    task: str
    kind: ScheduleKind
    every: float | None = None
    cron: str | None = None
    first_in: float | None = None
    options: dict[str, Any] = field(default_factory=dict)
    """queue, args, kwargs, description, sla, tz, mode, jitter, misfire, catch_up_limit, priority."""
    ignored: list[str] = field(default_factory=list)


def parse(text: str, path: str = "<schedules>") -> tuple[list[Entry], list[str]]:
    """(entries, problems) of a schedule file: each problem names its entry and line.
    ``ScheduleFileError`` only when the file as a whole cannot be read."""
    try:
        found = _definitions(text)
    except yaml.YAMLError as exc:
        raise ScheduleFileError(path, [f"not valid YAML: {exc}"]) from None
    except RecursionError:
        raise ScheduleFileError(path, ["nested too deeply"]) from None
    except ScheduleError as exc:
        raise ScheduleFileError(path, [str(exc)]) from None
    entries, problems = [], []
    for name, definitions in found.items():
        if len(definitions) > 1:
            problems.append(f"{name} (lines {', '.join(str(line) for line, _ in definitions)}): defined more than once")
            continue
        [(line, body)] = definitions
        try:
            entries.append(_entry(name, line, body))
        except ScheduleError as exc:
            problems.append(f"{name} (line {line}): {exc}")
    return entries, problems


def _definitions(text: str) -> dict[str, list[tuple[int, Any]]]:
    """Entry name (as written) -> each (line, body) defining it. Safe YAML only: a tag
    that would build an object is a ``YAMLError``."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    _check_size(root)
    if root is None:
        return {}
    if not isinstance(root, yaml.MappingNode):
        raise ScheduleError("the file must be a mapping of entry names to schedules")
    loader = yaml.SafeLoader("")
    found: dict[str, list[tuple[int, Any]]] = {}
    for key_node, value_node in root.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise ScheduleError(f"line {key_node.start_mark.line + 1}: an entry name must be plain text")
        body = loader.construct_object(value_node, deep=True)
        found.setdefault(str(key_node.value), []).append((key_node.start_mark.line + 1, body))
    return found


def _check_size(root: yaml.Node | None) -> None:
    """Refuse a document that refers to itself, or that aliases expand past ``MAX_VALUES``
    (a "billion laughs" file is small as text and enormous once loaded)."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            if known < 0:
                raise ScheduleError("the file refers to itself through a YAML alias")
            return known
        sizes[id(node)] = -1
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        if total > MAX_VALUES:
            raise ScheduleError(f"the file holds more than {MAX_VALUES:,} values once its YAML aliases are expanded")
        sizes[id(node)] = total
        return total

    if root is not None:
        size(root)


def _entry(name: str, line: int, body: Any) -> Entry:
    if not isinstance(body, dict):
        raise ScheduleError("an entry must be a mapping with cron: or every:")
    keys = {str(k) for k in body}
    unknown = sorted(keys - KNOWN - IGNORED)
    if unknown:
        raise ScheduleError(f"unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(KNOWN))}")
    if ("cron" in body) == ("every" in body):
        raise ScheduleError("needs exactly one of cron: or every:")
    entry = Entry(
        name=name,
        line=line,
        task=str(body.get("class") or name),
        kind=ScheduleKind.EVERY,
        ignored=sorted(keys & IGNORED),
    )
    if "cron" in body:
        _cron(entry, body["cron"])
    else:
        _every(entry, body["every"])
    entry.options.update(_args(body.get("args")))
    for key, convert in _OPTIONS.items():
        if key in body and body[key] is not None:
            entry.options[key] = convert(body[key], key)
    if "tz" in body and entry.options.get("tz") is not None and entry.kind is ScheduleKind.EVERY:
        raise ScheduleError("tz: applies to cron schedules only")
    return entry


def _cron(entry: Entry, value: Any) -> None:
    if not isinstance(value, str):
        raise ScheduleError(f"cron must be a string such as '*/5 * * * *', got {value!r}")
    expr, zone = cron.split_zone(value)
    entry.kind, entry.cron = ScheduleKind.CRON, cron.normalise(expr)
    if zone is not None:
        entry.options["tz"] = zone


def _every(entry: Entry, value: Any) -> None:
    options: dict[Any, Any] = {}
    if isinstance(value, list):
        if not value or len(value) > 2 or (len(value) == 2 and not isinstance(value[1], dict)):
            raise ScheduleError("every must be a duration, or [duration, {first_in: duration}]")
        value, options = value[0], (value[1] if len(value) == 2 else {})
    entry.every = parse_duration(value, "every")
    for raw_key, option in options.items():
        key = str(raw_key).lstrip(":")
        if key == "first_in":
            entry.first_in = parse_duration(option, "first_in")
        else:
            entry.ignored.append(f"every option {key}")


def _args(value: Any) -> dict[str, Any]:
    if value is None or value == "" or value == []:
        return {}
    if isinstance(value, dict):
        return {"kwargs": {str(k): v for k, v in value.items()}}
    if isinstance(value, list):
        return {"args": list(value)}
    return {"args": [value]}


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str | int | float):
        raise ScheduleError(f"{key} must be text, got {value!r}")
    return str(value)


def _number(value: Any, key: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ScheduleError(f"{key} must be an integer, got {value!r}")
    return value


_OPTIONS: dict[str, Callable[[Any, str], Any]] = {
    "queue": _text,
    "description": _text,
    "tz": _text,
    "mode": _text,
    "misfire": _text,
    "sla": parse_duration,
    "max_every": parse_duration,
    "jitter": parse_duration,
    "catch_up_limit": _number,
    "priority": _number,
}
