"""Every agent integration test runs under the harness's checks (tests/harness.py): no logged ERROR or
traceback, no leaked process, no warning."""

from __future__ import annotations

import pytest

from tests.harness import Checks


@pytest.fixture(autouse=True)
def _checked(checks: Checks) -> Checks:
    return checks
