"""The job helper on its own: what a job reports arrives in the GUI thread, in order, and a page's
Start/Stop pair follows the job (pattern: napari's _qt/_tests/test_threading_progress.py)."""

from __future__ import annotations

import threading

import pytest


@pytest.fixture
def parent(qtbot):
    from discomkd_gui.app import create_application
    from PySide6.QtCore import QObject

    create_application([])
    owner = QObject()
    yield owner
    from discomkd_gui.jobs import running_jobs

    for job in running_jobs():  # a test that failed half-way must not leave a thread behind
        job.request_stop()
        job.wait(10000)


class RecordedControls:
    """A stand-in for a page's StartStopHeader: remembers each state it was set to."""

    def __init__(self) -> None:
        self.states: list[bool] = []

    def set_running(self, running: bool) -> None:
        self.states.append(running)


def test_progress_events_result_then_done_arrive_in_order_on_the_gui_thread(parent, qtbot):
    from discomkd_gui.jobs import start_job

    gui_thread = threading.get_ident()
    calls: list[tuple] = []
    controls = RecordedControls()

    def work(state):
        calls.append(("work", threading.get_ident() != gui_thread))
        state.set_progress(0.5, "half way")
        state.publish("an event")
        return 42

    job = start_job(parent, "test", work, controls=controls,
                    on_progress=lambda f, m: calls.append(("progress", f, m, threading.get_ident() == gui_thread)),
                    on_event=lambda item: calls.append(("event", item, threading.get_ident() == gui_thread)),
                    on_result=lambda result: calls.append(("result", result)),
                    on_error=lambda message, details: calls.append(("error", message)),
                    on_done=lambda: calls.append(("done", list(controls.states))))
    assert controls.states == [True]  # Start off, Stop on as soon as the job starts
    with qtbot.waitSignal(job.finished, timeout=10000):
        pass
    assert calls == [("work", True), ("progress", 0.5, "half way", True), ("event", "an event", True),
                     ("result", 42), ("done", [True, False])]  # idle again before on_done runs
    assert job.result == 42 and not job.is_running()


def test_a_users_error_shows_its_own_message_and_anything_else_says_what_broke(parent, qtbot):
    from discomkd.errors import DataError
    from discomkd_gui.jobs import start_job

    def fail_with(exc):
        def work(state):
            raise exc
        return work

    errors: list[tuple[str, str]] = []
    results: list = []
    for exc in (DataError("The folder 'x' holds no class folders."), ZeroDivisionError("division by zero")):
        job = start_job(parent, "failing", fail_with(exc), on_result=results.append,
                        on_error=lambda message, details: errors.append((message, details)))
        with qtbot.waitSignal(job.finished, timeout=10000):
            pass
    assert results == []
    (user_message, _), (bug_message, bug_details) = errors
    assert user_message == "The folder 'x' holds no class folders."
    assert bug_message == "Something went wrong: ZeroDivisionError: division by zero"
    assert "Traceback" in bug_details and "ZeroDivisionError" in bug_details


def test_stop_reaches_the_job_which_ends_with_what_it_returns(parent, qtbot):
    from discomkd_gui.jobs import running_jobs, start_job

    started = threading.Event()

    def work(state):
        started.set()
        return "stopped cleanly" if _wait_for_stop(state) else "never asked to stop"

    controls = RecordedControls()
    job = start_job(parent, "stoppable", work, controls=controls)
    assert started.wait(10)
    assert job.is_running() and job in running_jobs() and job.parent() is parent
    with qtbot.waitSignal(job.finished, timeout=10000):
        job.request_stop()
    assert job.stop_requested and job.result == "stopped cleanly"
    assert job not in running_jobs() and controls.states == [True, False]


def _wait_for_stop(state) -> bool:
    """Wait for the stop request as the engine does, by asking between steps (10 s at most)."""
    import time

    for _ in range(1000):
        if state.is_interrupted:
            return True
        time.sleep(0.01)
    return False
