"""The admission queue and the work budget, with plain Python jobs (no TF, no Streamlit)."""

import threading
import time

import pytest

from saliency_core.methods import METHODS, Work, get_method
from saliency_core.safety.budget import (
    ModelCost,
    OverBudgetError,
    advise,
    check_method,
    check_work,
    format_seconds,
)
from saliency_core.safety.jobs import (
    AdmissionQueue,
    Estimate,
    JobCancelledError,
    JobOverrunError,
    checkpoint,
    current_job,
)
from saliency_core.safety.limits import GIB, MIB, Limits

HEAVY = Estimate(seconds=30, peak_bytes=100 * MIB)
LIGHT = Estimate(seconds=0.1, peak_bytes=10 * MIB)


def blocking(release: threading.Event, started: list, name: str):
    """A job body that records its start and then waits, passing checkpoints."""
    def run(progress):
        started.append(name)
        while not release.wait(0.01):
            checkpoint()
        return name
    return run


def wait_until(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def test_at_most_max_running_jobs_run_and_the_rest_wait_in_order():
    queue = AdmissionQueue(max_running=2, light_slots=0)
    release, started = threading.Event(), []
    jobs = [queue.submit(f"k{i}", f"s{i}", f"job {i}", HEAVY, blocking(release, started, i))
            for i in range(4)]
    assert wait_until(lambda: len(started) == 2)
    time.sleep(0.1)
    assert sorted(started) == [0, 1]
    assert [queue.position(j) for j in jobs] == [0, 0, 1, 2]
    release.set()
    for job in jobs:
        assert job.wait(5)
    assert [job.outcome() for job in jobs] == [0, 1, 2, 3]
    assert started.index(2) < started.index(3)  # first come, first served


def test_one_session_runs_one_job_at_a_time():
    queue = AdmissionQueue(max_running=4, per_session=1)
    release, started = threading.Event(), []
    first = queue.submit("a", "same", "a", HEAVY, blocking(release, started, "a"))
    second = queue.submit("b", "same", "b", HEAVY, blocking(release, started, "b"))
    other = queue.submit("c", "other", "c", HEAVY, blocking(release, started, "c"))
    assert wait_until(lambda: len(started) == 2)
    time.sleep(0.1)
    assert set(started) == {"a", "c"} and queue.position(second) == 1
    release.set()
    assert all(job.wait(5) for job in (first, second, other))


def test_the_same_result_is_computed_once_for_everyone_waiting():
    queue = AdmissionQueue()
    release, started = threading.Event(), []
    jobs = [queue.submit("same map", f"student {i}", "map", HEAVY,
                         blocking(release, started, i)) for i in range(30)]
    assert all(job is jobs[0] for job in jobs)
    assert jobs[0].waiters == 30
    release.set()
    assert jobs[0].wait(5) and started == [0] and queue.started_jobs == 1


def test_a_job_nobody_waits_for_stops_at_its_next_checkpoint():
    queue = AdmissionQueue(grace_seconds=0.2)
    release, started = threading.Event(), []
    job = queue.submit("k", "s", "map", HEAVY, blocking(release, started, "x"))
    assert wait_until(lambda: started)
    queue.leave(job)
    time.sleep(0.05)
    assert not job.cancelled  # within the grace, a rerun could pick it up again
    assert job.wait(3)
    assert job.state == "cancelled"
    with pytest.raises(JobCancelledError):
        job.outcome()
    assert queue.running_count() == 0


def test_a_rerun_within_the_grace_picks_the_job_up_instead_of_restarting_it():
    queue = AdmissionQueue(grace_seconds=0.5)
    release, started = threading.Event(), []
    job = queue.submit("k", "s", "map", HEAVY, blocking(release, started, "x"))
    assert wait_until(lambda: started)
    queue.leave(job)
    again = queue.submit("k", "s", "map", HEAVY, blocking(release, started, "y"))
    assert again is job
    time.sleep(0.7)
    assert not job.cancelled
    release.set()
    assert job.wait(3) and job.outcome() == "x" and started == ["x"]


def test_asking_for_something_else_stops_the_abandoned_job_at_once_and_names_it():
    """A session that left a running check and a queued map and now asks for another
    result gets both stopped at once (not after the grace), with their labels for the
    page to show; a job someone still waits for, or another session's, is left alone."""
    queue = AdmissionQueue(grace_seconds=30, max_running=2)
    release, started = threading.Event(), []
    check = queue.submit("check", "s", "the randomisation", HEAVY,
                         blocking(release, started, "check"))
    other = queue.submit("other", "t", "someone's map", HEAVY,
                         blocking(release, started, "other"))
    assert wait_until(lambda: len(started) == 2)
    queued = queue.submit("map", "s", "SmoothGrad", HEAVY, blocking(release, started, "map"))
    queue.leave(check)
    queue.leave(queued)
    kept = queue.submit("kept", "s", "the edge check", LIGHT, blocking(release, started, "k"))
    assert sorted(queue.supersede("s", "new")) == ["SmoothGrad", "the randomisation"]
    assert check.wait(3) and check.state == "cancelled"
    assert queued.state == "cancelled" and "map" not in started
    assert not other.cancelled and not kept.cancelled
    assert queue.supersede("s", "new") == []  # nothing left to stop
    release.set()
    assert other.wait(3) and other.outcome() == "other"
    assert kept.wait(3) and kept.outcome() == "k"


def test_a_rerun_that_overtakes_the_run_it_replaces_still_stops_and_names_its_job():
    """Streamlit starts a rerun in a new thread at once and stops the old run only at
    its next element, so the new run can ask for something else while the old run still
    waits for its job. That job is stopped and named all the same; a job another session,
    or an untagged waiter (a video frame), also waits for is left alone."""
    queue = AdmissionQueue(grace_seconds=30, max_running=3, per_session=3)
    release, started = threading.Event(), []
    old = queue.submit("check", "s", "the randomisation", HEAVY,
                       blocking(release, started, "check"), run="run 1")
    shared = queue.submit("map", "s", "the map", HEAVY, blocking(release, started, "map"),
                          run="run 1")
    queue.submit("map", "t", "the map", HEAVY, blocking(release, started, "map"), run="x")
    frame = queue.submit("frame", "s", "a live frame", HEAVY,
                         blocking(release, started, "frame"))
    assert wait_until(lambda: len(started) == 3)
    assert queue.supersede("s", "faith", run="run 1") == []  # the same run: not left behind
    assert queue.supersede("s", "faith", run="run 2") == ["the randomisation"]
    assert old.wait(3) and old.state == "cancelled"
    assert not shared.cancelled and not frame.cancelled
    queue.leave(old, "s", "run 1")  # the old run, stopped at last, leaves: nothing breaks
    assert old.waiters == 0 and shared.waiters == 2
    queue.leave(shared, "s", "run 1")
    assert shared.waiters == 1 and not shared.cancelled
    release.set()
    assert shared.wait(3) and shared.outcome() == "map"
    assert frame.wait(3) and frame.outcome() == "frame"


def test_a_job_stopped_after_the_grace_is_named_when_its_session_asks_for_another():
    """A rerun can take longer than the grace to reach its next request: the janitor
    stops the abandoned job first, and the page still says what was stopped, once; a
    session asking for the same result again hears nothing (it is started again)."""
    queue = AdmissionQueue(grace_seconds=0.1)
    release, started = threading.Event(), []
    job = queue.submit("check", "s", "the randomisation", HEAVY,
                       blocking(release, started, "x"))
    assert wait_until(lambda: started)
    queue.leave(job)
    assert job.wait(3) and job.state == "cancelled"
    assert queue.supersede("t", "other") == []  # another session's: not said to it
    assert queue.supersede("s", "faith") == ["the randomisation"]
    assert queue.supersede("s", "faith") == []  # said once
    again = queue.submit("check", "s", "the randomisation", HEAVY,
                         blocking(release, started, "y"))
    queue.leave(again)
    assert again.wait(3)
    assert queue.supersede("s", "check") == []  # the same result asked again
    release.set()


def test_a_queued_job_nobody_waits_for_is_dropped_without_running():
    queue = AdmissionQueue(max_running=1, light_slots=0, grace_seconds=0.1)
    release, started = threading.Event(), []
    first = queue.submit("a", "s1", "a", HEAVY, blocking(release, started, "a"))
    second = queue.submit("b", "s2", "b", HEAVY, blocking(release, started, "b"))
    queue.leave(second)
    assert second.wait(3) and second.state == "cancelled"
    release.set()
    assert first.wait(3) and started == ["a"]


def test_jobs_wait_until_their_memory_fits():
    queue = AdmissionQueue(max_running=3, memory_bytes=1 * GIB)
    release, started = threading.Event(), []
    big = Estimate(seconds=30, peak_bytes=700 * MIB)
    first = queue.submit("a", "s1", "a", big, blocking(release, started, "a"))
    second = queue.submit("b", "s2", "b", big, blocking(release, started, "b"))
    assert wait_until(lambda: started)
    time.sleep(0.1)
    assert started == ["a"] and queue.position(second) == 1
    release.set()
    assert first.wait(3) and second.wait(3) and started == ["a", "b"]


def test_a_light_job_does_not_wait_behind_two_long_ones():
    queue = AdmissionQueue(max_running=2, light_slots=1)
    release, started = threading.Event(), []
    heavy = [queue.submit(f"h{i}", f"s{i}", "h", HEAVY, blocking(release, started, f"h{i}"))
             for i in range(3)]
    light = queue.submit("light", "s9", "vanilla", LIGHT, lambda progress: "done")
    assert light.wait(3) and light.outcome() == "done"
    assert queue.position(heavy[2]) == 1  # a heavy one still waits for a general slot
    release.set()
    assert all(job.wait(3) for job in heavy)


def test_a_job_that_overruns_its_estimate_is_stopped():
    queue = AdmissionQueue(overrun_factor=1.0, overrun_floor=0.2)
    release, started = threading.Event(), []
    job = queue.submit("k", "s", "Occlusion", Estimate(seconds=0.05),
                       blocking(release, started, "x"))
    assert job.wait(3)
    with pytest.raises(JobOverrunError, match="took longer than"):
        job.outcome()


def test_the_overrun_limit_allows_for_the_jobs_that_share_the_cpu():
    """An estimate is for a job alone; up to max_running + light_slots jobs share the
    cores, so a job is stopped only beyond the factor times that many times its estimate."""
    queue = AdmissionQueue(max_running=2, light_slots=1, overrun_factor=4.0,
                           overrun_floor=1.0)
    release = threading.Event()
    job = queue.submit("k", "s", "Integrated Gradients", Estimate(seconds=10),
                       blocking(release, [], "x"))
    assert job.limit_seconds == pytest.approx(4.0 * 3 * 10)
    release.set()
    assert job.wait(3) and job.outcome() == "x"


def test_errors_reach_the_waiters_and_checkpoint_is_a_no_op_outside_a_job():
    checkpoint()
    assert current_job() is None

    def fail(progress):
        progress(0.5)
        assert current_job() is not None
        raise ValueError("no")

    job = AdmissionQueue().submit("k", "s", "x", LIGHT, fail)
    assert job.wait(3) and job.progress == 0.5
    with pytest.raises(ValueError, match="no"):
        job.outcome()


# ------------------------------------------------------------------ the work budget

COST = ModelCost(gradient_fixed_seconds=0.01, gradient_image_seconds=0.05,
                 forward_fixed_seconds=0.005, forward_image_seconds=0.02,
                 image_bytes=50 * MIB, call_bytes=100 * MIB)
LIMITS = Limits(max_job_seconds=60, job_memory_bytes=2 * GIB)


def test_cost_is_fixed_per_call_plus_per_image():
    work = Work(gradient=20, forward=5)
    assert COST.seconds(work, batch=10) == pytest.approx(2 * 0.01 + 20 * 0.05
                                                         + 1 * 0.005 + 5 * 0.02)
    assert COST.peak_bytes(work, batch=10) == 100 * MIB + 10 * 50 * MIB
    assert COST.peak_bytes(Work(gradient=3), batch=10) == 100 * MIB + 3 * 50 * MIB
    assert COST.batch_for(1 * GIB) == (1024 - 100) // 50
    assert ModelCost.from_dict(COST.to_dict()) == COST
    with pytest.raises(ValueError):
        ModelCost.from_dict({**COST.to_dict(), "image_bytes": float("nan")})


def test_occlusion_at_stride_2_on_a_1024_model_is_refused_with_the_stride_that_fits():
    method = METHODS["occlusion"]
    params = {"patch": 32, "stride": 2}
    with pytest.raises(OverBudgetError) as refused:
        check_method(method, params, (1024, 1024), COST, 16, LIMITS)
    message = str(refused.value)
    assert "Occlusion would take about" in message and "forward passes" in message
    assert "the limit is 60 s" in message
    hint = [h for h in advise(method, params, (1024, 1024), COST, 16, LIMITS)
            if h.startswith("Stride")][0]
    smallest = int(hint.rsplit(" ", 1)[1])
    assert f"Stride (pixels) at least {smallest}" in message
    fits = get_method("occlusion", patch=32, stride=smallest).work((1024, 1024))
    assert COST.seconds(fits, 16) <= 60
    too_fine = get_method("occlusion", patch=32, stride=smallest - 2).work((1024, 1024))
    assert COST.seconds(too_fine, 16) > 60


def test_smoothgrad_advice_names_the_most_samples_that_fit():
    slow = ModelCost(0.0, 1.0, 0.0, 0.3, image_bytes=10 * MIB)
    params = {"noise": 0.15, "samples": 100}
    hints = advise(METHODS["smoothgrad"], params, (224, 224), slow, 8, LIMITS)
    assert "Samples at most 59" in hints  # 59 gradients + 1 forward pass = 59.3 s
    assert not any(h.startswith("Noise") for h in hints)  # noise changes no cost


def test_memory_above_the_budget_is_refused_even_when_fast():
    fat = ModelCost(0.0, 0.001, 0.0, 0.001, image_bytes=3 * GIB)
    with pytest.raises(OverBudgetError, match="of memory at once"):
        check_work("Vanilla gradient", Work(gradient=1), fat, 1, LIMITS)


def test_format_seconds():
    assert [format_seconds(s) for s in (0.42, 45, 240, 9000)] == ["0.4 s", "45 s", "4 min",
                                                                 "2.5 h"]
