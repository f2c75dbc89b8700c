"""The master's GC policy: it freezes the heap only when the fleet grew, and times every collection."""

from __future__ import annotations

import gc

from edgerm.master.gc_policy import GcPolicy
from edgerm.master.metrics import MasterMetrics, render_metrics
from edgerm.master.service import MasterService


def test_freezes_only_when_the_fleet_grew_by_the_growth_and_minimum():
    size = [0]
    metrics = MasterMetrics()
    thresholds = gc.get_threshold()
    policy = GcPolicy(metrics, lambda: size[0], growth=0.25, minimum=100, young_limit=0)
    try:
        policy.install()
        assert not policy.check()
        size[0] = 99
        assert not policy.check()
        size[0] = 100
        assert policy.check() and policy.frozen_size == 100 and metrics.gc_freezes == 1
        size[0] = 224  # below 100 * 1.25 + 100
        assert not policy.check()
        size[0] = 225
        assert policy.check() and metrics.gc_freezes == 2
    finally:
        policy.uninstall()
    assert gc.get_threshold() == thresholds and gc.get_freeze_count() == 0  # the process is left as it was


def test_collections_are_timed_into_the_metrics():
    service = MasterService()
    unwatch = service.metrics.watch_gc()
    try:
        gc.collect(0)
        gc.collect(2)
    finally:
        unwatch()
    assert service.metrics.gc_pauses.count("0") >= 1 and service.metrics.gc_pauses.count("2") >= 1
    assert service.metrics.gc_cpu["2"] >= 0.0
    text = render_metrics(service.metrics, service.core, service.gauges(), 0.0)
    assert 'edgerm_gc_pause_seconds_count{generation="2"}' in text
    assert "edgerm_gc_freezes_total 0" in text


def test_thresholds_come_from_the_environment_only_when_valid():
    from edgerm.master.gc_policy import GC_THRESHOLDS, thresholds

    assert thresholds({}) == GC_THRESHOLDS
    assert thresholds({"EDGERM_GC_THRESHOLDS": "5000,20,100"}) == (5000, 20, 100)
    assert thresholds({"EDGERM_GC_THRESHOLDS": "5000,20"}) == GC_THRESHOLDS
    assert thresholds({"EDGERM_GC_THRESHOLDS": "0,20,100"}) == GC_THRESHOLDS


def test_a_young_generation_over_its_limit_is_collected_even_when_the_count_stays_low():
    metrics = MasterMetrics()
    policy = GcPolicy(metrics, lambda: 0, young_limit=1_000)
    try:
        policy.install()
        gc.collect(0)
        assert not policy.check() and metrics.gc_young_collections == 0  # nothing young yet
        # Many new objects while as many old ones are freed: the young count stays low, the generation grows.
        old = [[i] for i in range(3_000)]
        gc.collect(0)  # the old ones are past the young generation
        new = []
        for i in range(3_000):
            new.append([i])
            old.pop()
        assert gc.get_count()[0] < 1_000 and len(gc.get_objects(0)) > 1_000
        assert not policy.check()  # no freeze: the fleet did not grow
        assert metrics.gc_young_collections == 1 and len(gc.get_objects(0)) < 1_000
        assert "edgerm_gc_young_collections_total 1" in render_metrics(metrics, MasterService().core, {}, 0.0)
    finally:
        policy.uninstall()
    del new
