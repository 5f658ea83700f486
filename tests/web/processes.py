"""Running ``backbeat`` commands as real processes for the web tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


def env(url: str, **extra: str) -> dict[str, str]:
    out = dict(os.environ)
    out["PYTHONPATH"] = os.pathsep.join([str(HERE), str(ROOT / "src"), out.get("PYTHONPATH", "")])
    out["BACKBEAT_URL"] = url
    out.pop("BACKBEAT_TOKEN", None)
    out.pop("PROMETHEUS_MULTIPROC_DIR", None)
    out.update(extra)
    return out


def backbeat(url: str, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backbeat", *args],
        env=env(url, **extra),
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=60,
    )


def spawn(url: str, log: Path, *args: str, **extra: str) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "backbeat", *args], env=env(url, **extra), cwd=HERE, stdout=out, stderr=out
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
