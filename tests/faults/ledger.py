"""Reading the fault tests' ledger (written by ``fapps.record``): executions, lost and
duplicate jobs."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Execution:
    job: str
    attempt: int
    pid: int
    start: float
    stop: float | None = None
    """When it stopped; None if its process died first."""
    finished: bool = False
    """It ran to its end (``end``), not stopped early."""

    def overlaps(self, other: Execution, now: float) -> bool:
        return self.start < (other.stop or now) and other.start < (self.stop or now)


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path

    def lines(self) -> list[list[str]]:
        if not self.path.exists():
            return []
        # a line cut short by a crash mid-write has fewer fields: ignore it
        return [f for f in (line.split() for line in self.path.read_text().splitlines()) if len(f) == 6]

    def executions(self) -> list[Execution]:
        """Every execution, in the order they started."""
        open_: dict[tuple[str, int, int], Execution] = {}
        out: list[Execution] = []
        for event, job, attempt, pid, at, _extra in self.lines():
            key = (job, int(attempt), int(pid))
            if event == "start":
                open_[key] = Execution(job=job, attempt=int(attempt), pid=int(pid), start=float(at))
                out.append(open_[key])
            elif event in ("end", "stop") and key in open_:
                open_[key].stop = float(at)
                open_[key].finished = event == "end"
        return out

    def by_job(self) -> dict[str, list[Execution]]:
        out: dict[str, list[Execution]] = defaultdict(list)
        for e in self.executions():
            out[e.job].append(e)
        return out

    def finished(self) -> set[str]:
        return {e.job for e in self.executions() if e.finished}

    def ticks(self) -> list[tuple[str, float, float]]:
        """(job id, fire_at, when it ran by the machine's real clock) of each scheduled run."""
        out = []
        for event, job, _attempt, _pid, at, extra in self.lines():
            if event == "tick":
                out.append((job, float(extra.split(":")[0]), float(at)))
        return out
