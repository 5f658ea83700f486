"""The CLI loads a command's module only when the command is used (``cli.main.COMMANDS``)."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import backbeat.cli
from backbeat.cli.main import COMMANDS, cli


def test_every_command_is_found_where_the_map_says() -> None:
    for info in pkgutil.iter_modules(backbeat.cli.__path__):
        importlib.import_module(f"backbeat.cli.{info.name}")
    registered = {name: command.callback.__module__ for name, command in cli.commands.items() if command.callback}
    assert registered == {name: f"backbeat.cli.{module}" for name, module in COMMANDS.items()}


def test_a_command_loads_its_own_module_only() -> None:
    code = (
        "import sys\n"
        "from backbeat.cli.main import cli\n"
        "cli.get_command(None, 'migrate')\n"
        "print(sorted(m for m in sys.modules if m.startswith('backbeat.cli.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['backbeat.cli.admin', 'backbeat.cli.main']"
