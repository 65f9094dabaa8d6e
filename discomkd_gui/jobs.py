"""The one adapter between engine jobs and Qt: a QObject worker in a QThread.

Modelled on Orange's ``TaskState``: a job function receives a :class:`TaskState` and may only
report progress, publish events (partial results, engine events) and ask whether it was
interrupted. Everything it reports arrives in the GUI thread as Qt signals, so widgets are never
touched from the worker. Used for scanning folders, training, prediction and comparisons; every
caller starts its job with :func:`start_job`, which writes the wiring once.
"""

from __future__ import annotations

import traceback
from typing import Any, Callable, Protocol

from discomkd.training.events import StopToken
from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot


class TaskState(QObject):
    """What a job function sees: progress, partial results, interruption."""

    progress_changed = Signal(float, str)
    published = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self.stop = StopToken()

    def set_progress(self, fraction: float, message: str = "") -> None:
        self.progress_changed.emit(float(fraction), message)

    def publish(self, item: Any) -> None:
        """Send a partial result or an engine event to the GUI thread."""
        self.published.emit(item)

    @property
    def is_interrupted(self) -> bool:
        return self.stop.is_set()


class _Worker(QObject):
    succeeded = Signal(object)
    failed = Signal(str, str)  # user message, technical details
    done = Signal()

    def __init__(self, fn: Callable[[TaskState], Any], state: TaskState) -> None:
        super().__init__()
        self._fn = fn
        self._state = state

    @Slot()
    def run(self) -> None:
        try:
            result = self._fn(self._state)
        except Exception as exc:  # noqa: BLE001 - a job must never take the application down
            from_user = type(exc).__module__.startswith("discomkd") and "Error" in type(exc).__name__
            message = str(exc) if from_user else f"Something went wrong: {type(exc).__name__}: {exc}"
            self.failed.emit(message, traceback.format_exc())
        else:
            self.succeeded.emit(result)
        finally:
            self.done.emit()


# Jobs whose thread still runs. A QThread destroyed while running aborts the process, so a job
# stays referenced here until its thread has ended, even if its page or window is gone.
_RUNNING: set["Job"] = set()


def running_jobs() -> list["Job"]:
    return list(_RUNNING)


def stop_all_jobs(timeout_ms: int = 30000) -> None:
    """Ask every running job to stop and wait for their threads (application shutdown)."""
    for job in list(_RUNNING):
        job.request_stop()
    for job in list(_RUNNING):
        job.wait(timeout_ms)


class Job(QObject):
    """A background job. Connect to its signals, then ``start()``; ``request_stop()`` to interrupt.

    Signals (all delivered in the GUI thread):
    ``progress(fraction, message)``, ``event(item)``, ``succeeded(result)``,
    ``failed(message, details)`` and ``finished()`` which always comes last.
    """

    progress = Signal(float, str)
    event = Signal(object)
    succeeded = Signal(object)
    failed = Signal(str, str)
    finished = Signal()

    def __init__(self, fn: Callable[[TaskState], Any], name: str = "job", parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self.state = TaskState()
        self._thread = QThread()
        self._thread.setObjectName(f"discomkd-{name}")
        self._worker = _Worker(fn, self.state)
        self._worker.moveToThread(self._thread)
        self.state.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        # Queued connections: the worker emits in its thread, the slots run in ours.
        self.state.progress_changed.connect(self.progress)
        self.state.published.connect(self.event)
        self._worker.succeeded.connect(self.succeeded)
        self._worker.failed.connect(self.failed)
        # Direct: quit() is thread-safe, and the thread must end even while the GUI thread waits on it.
        self._worker.done.connect(self._thread.quit, Qt.ConnectionType.DirectConnection)
        self._thread.finished.connect(self._on_thread_finished)
        self._running = False
        self.result: Any = None
        self.succeeded.connect(self._keep_result)

    def _keep_result(self, result: Any) -> None:
        self.result = result

    def start(self) -> "Job":
        self._running = True
        _RUNNING.add(self)
        self._thread.start()
        return self

    def request_stop(self) -> None:
        self.state.stop.request()

    @property
    def stop_requested(self) -> bool:
        return self.state.stop.is_set()

    def is_running(self) -> bool:
        return self._running

    def wait(self, msecs: int = 30000) -> bool:
        """Block until the thread ends (for shutdown only; never during normal use)."""
        return self._thread.wait(msecs)

    def _on_thread_finished(self) -> None:
        self._running = False
        _RUNNING.discard(self)
        self.finished.emit()


class RunControls(Protocol):
    """The Start/Stop pair of a page (``StartStopHeader``): Start off and Stop on while a job runs."""

    def set_running(self, running: bool) -> None: ...


def start_job(
    parent: QObject,
    name: str,
    fn: Callable[[TaskState], Any],
    *,
    on_result: Callable[[Any], None] | None = None,
    on_error: Callable[[str, str], None] | None = None,
    on_progress: Callable[[float, str], None] | None = None,
    on_event: Callable[[Any], None] | None = None,
    on_done: Callable[[], None] | None = None,
    controls: RunControls | None = None,
) -> Job:
    """Run ``fn(state)`` as a :class:`Job` owned by ``parent``, connected to the given slots, and start it.

    ``on_result(result)`` or ``on_error(message, details)`` comes once; ``on_done()`` always comes
    last, after ``controls`` (if any) went back to idle. ``on_progress(fraction, message)`` and
    ``on_event(item)`` receive what the job reports meanwhile. Returns the running job.
    """
    job = Job(fn, name, parent)
    for signal, slot in ((job.progress, on_progress), (job.event, on_event), (job.succeeded, on_result),
                         (job.failed, on_error)):
        if slot is not None:
            signal.connect(slot)
    if controls is not None:
        controls.set_running(True)
        job.finished.connect(lambda: controls.set_running(False))
    if on_done is not None:
        job.finished.connect(on_done)
    return job.start()
