"""Run the test suite; "no tests collected" (pytest's exit code 5) is a failure, said plainly."""

import sys

import pytest

code = pytest.main(sys.argv[1:])
if code == pytest.ExitCode.NO_TESTS_COLLECTED:
    print("error: pytest collected no tests; that is a failure, not a pass", file=sys.stderr)
    code = 1
sys.exit(int(code))
