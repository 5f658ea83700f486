import pytest

pytest.register_assert_rewrite("tests.model.jobs", "tests.model.schedules", "tests.model.twins")
