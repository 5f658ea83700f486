"""``python -m backbeat`` is the ``backbeat`` command."""

from backbeat.cli.main import main

main()
