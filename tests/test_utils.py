"""metacourse.utils: the clock the experiments time themselves with."""

import time

from metacourse.utils import Clock


def test_clock_adds_the_seconds_of_earlier_sessions():
    fresh, resumed = Clock(), Clock(wall=100.0, cpu=40.0)
    deadline = time.perf_counter() + 0.05
    while time.perf_counter() < deadline:  # burn a little CPU so both clocks move
        sum(range(1000))
    wall, cpu = fresh.totals()
    assert 0.05 <= wall < 5 and 0 < cpu < 5
    resumed_wall, resumed_cpu = resumed.totals()
    assert 100.05 <= resumed_wall < 105 and 40 < resumed_cpu < 45
    assert fresh.wall() >= wall  # it keeps running
