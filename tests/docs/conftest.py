"""Fixtures of the docs test: the one test cluster (tests/docs/cluster.py)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docs.cluster import DocsCluster, start_cluster


@pytest.fixture(scope="session")
def docs_cluster() -> Iterator[DocsCluster]:
    with tempfile.TemporaryDirectory(prefix="edgerm-docs-cluster-") as tmp:
        cluster = start_cluster(Path(tmp))
        try:
            yield cluster
        finally:
            cluster.stop()
