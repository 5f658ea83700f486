"""Nothing in a payload is ever code: no pickle, eval or exec, and no import driven by data.
A task name in a job, an event or a schedule file only ever resolves to a registered task."""

from __future__ import annotations

import io
import json
import sys
import tokenize
from pathlib import Path

import pytest

from backbeat import App, Client, JobState
from backbeat.events import ENQUEUE_EVENT
from backbeat.resque import ScheduleFileError
from backbeat.testing import ManualClock, run_until_idle
from backbeat.types import EventFilter, EventState, NewEvent

SOURCE = Path(__file__).resolve().parents[2] / "src" / "backbeat"
FORBIDDEN = {"pickle", "cPickle", "dill", "cloudpickle", "marshal", "shelve", "eval", "exec", "compile", "__import__"}
FORBIDDEN |= {"importlib", "import_module", "load", "unsafe_load", "full_load"}
ALLOWED = {
    ("types.py", "exec"): "types.evolve: code generated from a dataclass's own field names, never from data",
    ("cli/loader.py", "importlib"): "APP (module:attribute) given on the command line by the operator",
    ("cli/loader.py", "import_module"): "the same",
    ("store/sqlite/connection.py", "importlib"): "importlib.resources: reading the package's own migrations",
    ("store/postgres/connection.py", "importlib"): "importlib.resources: reading the package's own migrations",
    ("store/redis/scripts.py", "importlib"): "importlib.resources: reading the package's own Lua scripts",
    ("cli/main.py", "importlib"): "a command's own module, named in the fixed COMMANDS table, loaded when used",
    ("cli/main.py", "import_module"): "the same",
    ("cli/demo.py", "importlib"): "importlib.util.find_spec('pydantic'): is an extra installed (imports nothing)",
}
LOAD_OK = {"json", "self", "conn"}
"""``x.load(...)`` is forbidden (``yaml.load``, ``pickle.load``) unless ``x`` is one of these."""


def code_names(path: Path) -> list[tuple[int, str]]:
    """Names used as code (not inside strings or comments), with their lines."""
    tokens = list(tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline))
    found = []
    for index, tok in enumerate(tokens):
        if tok.type != tokenize.NAME or tok.string not in FORBIDDEN:
            continue
        before = tokens[index - 1].string if index else ""
        owner = tokens[index - 2].string if index > 1 else ""
        if tok.string in {"load", "unsafe_load", "full_load"} and (before != "." or owner in LOAD_OK):
            continue
        if tok.string == "compile" and before == ".":  # re.compile
            continue
        found.append((tok.start[0], tok.string))
    return found


def test_the_source_has_no_pickle_eval_exec_or_data_driven_import() -> None:
    seen: dict[tuple[str, str], list[int]] = {}
    for path in sorted(SOURCE.rglob("*.py")):
        relative = path.relative_to(SOURCE).as_posix()
        for line, name in code_names(path):
            seen.setdefault((relative, name), []).append(line)
    unexpected = {k: v for k, v in seen.items() if k not in ALLOWED}
    assert not unexpected, f"forbidden names in the source (file, name) -> lines: {unexpected}"
    assert set(seen) == set(ALLOWED), "an allowed use is gone: drop it from ALLOWED"
    assert len(seen[("types.py", "exec")]) == 1


def test_yaml_is_only_ever_safe_loaded() -> None:
    resque = (SOURCE / "resque.py").read_text(encoding="utf-8")
    assert "yaml.safe_load" in resque or "SafeLoader" in resque
    assert "yaml.load(" not in resque and "yaml.Loader" not in resque and "FullLoader" not in resque


@pytest.fixture
def canary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A module that leaves a file behind if anything ever imports it."""
    marker = tmp_path / "imported"
    (tmp_path / "bb_canary.py").write_text(
        f"open({str(marker)!r}, 'w').close()\ndef boom(*args, **kwargs):\n    open({str(marker)!r}, 'w').close()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return marker


def test_a_task_name_in_a_payload_only_resolves_to_a_registered_task(canary: Path) -> None:
    app = App("memory://names", clock=ManualClock(1_800_000_000.0))

    @app.task(name="known")
    def known() -> None: ...

    client = Client(settings=app.settings, clock=app.clock)
    jobs = [client.enqueue(name, args=["touch /tmp/x"]) for name in ("bb_canary.boom", "os.system", "builtins.eval")]

    async def emit_raw() -> None:
        body = {"task": "bb_canary.boom", "args": ["x"]}
        event = NewEvent(id="e1", name=ENQUEUE_EVENT, occurred_at=0.0, payload=json.dumps(body))
        await (await app.client.astore()).event_append([event], now=app.clock.now())

    app.client.sync(emit_raw)
    assert run_until_idle(app) == 0  # nothing of an unknown name is claimed, so nothing runs
    assert [j.status() for j in jobs] == [JobState.QUEUED] * 3
    assert not canary.exists() and "bb_canary" not in sys.modules

    async def events() -> list[EventState]:
        return [e.state for e in await (await app.client.astore()).event_list(EventFilter())]

    assert app.client.sync(events) == [EventState.HANDLED]  # a job of that name, which no worker knows
    client.close()


def test_a_schedule_file_names_only_known_tasks(canary: Path) -> None:
    app = App("memory://yaml-names", clock=ManualClock(1_800_000_000.0))
    with pytest.raises(ScheduleFileError, match=r"unknown task 'bb_canary\.boom'"):
        app.schedules.load("poll:\n  every: 20s\n  class: bb_canary.boom\n")
    assert not canary.exists() and "bb_canary" not in sys.modules
