"""A trial's calls to an MLflow tracking server, made off the training thread.

MLflow's client retries a server that stops answering for minutes (7 tries with backoff,
120 s each where packets are dropped); made on the training thread, the first log after a
server died mid-trial held the GPU idle that long. Here one thread per trial's logger makes
the calls in order; logging returns at once. A call in flight longer than `stall_s` has the
server probed (1 s): one that does not answer is gone, and the trial's logger is switched
off (`Gone`); one that answers is busy and waited for, as MLflow's client would.

The thread ends when the logger closes (after sending what is queued) or is switched off
(after the call MLflow is still retrying, left to MLflow's own schedule: one such thread
at most per server gone, as a server found gone is not asked again by the process).
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any, Callable

THREAD_NAME = "hpoc-mlflow-send"
MAX_QUEUED = 1000  # calls (params, items; metrics wait in their sink, one call for all); a full queue waits


class Gone(ConnectionError):
    """The server stopped answering while the trial logged."""


class Inline:
    """The same calls for a store without a server (files, a database): made right away."""

    def put(self, fn: Callable[[], Any]) -> None:
        fn()

    def call(self, fn: Callable[[], Any]) -> Any:
        return fn()

    def check(self) -> None:
        pass

    def drain(self) -> None:
        pass

    def flush(self, timeout_s: float, last: Callable[[], Any]) -> bool:
        last()
        return True

    def stop(self) -> None:
        pass


class Sender:
    """Calls made in order by one thread. `gone()` probes the server: None while it answers,
    else what to say. `stall_s`: how long a call may be in flight before it is asked."""

    def __init__(self, gone: Callable[[], str | None], stall_s: float) -> None:
        self._gone, self._stall_s = gone, stall_s
        self._queue: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._since: float | None = None  # when the call in flight started
        self._asked = 0.0  # when the server was last probed
        self._error: BaseException | None = None
        self._stopped = self._closing = self._ended = False
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not (self._stopped or self._closing):
                    self._cond.wait()
                if self._stopped or not self._queue:
                    self._ended = True
                    return
                fn, done = self._queue.popleft()
                self._since = time.monotonic()
            try:
                result: Any = fn()
            except BaseException as exc:  # noqa: BLE001 — said on the trial's thread
                result = exc
                with self._cond:
                    self._error = exc
                    self._stopped = True
                    self._queue.clear()
            with self._cond:
                self._since = None
                if done is not None:
                    done.append(result)
                self._cond.notify_all()

    def _check(self) -> None:
        """Raise what failed, or Gone when the call in flight has stalled and a probe is not
        answered. Called holding the lock; probes at most once per `stall_s`."""
        if self._error is not None:
            raise self._error
        now = time.monotonic()
        if self._since is None or now - self._since < self._stall_s or now - self._asked < self._stall_s:
            return
        self._asked = now
        self._cond.release()  # the probe takes up to a second: the thread may go on meanwhile
        try:
            why = self._gone()
        finally:
            self._cond.acquire()
        if why and self._since is not None:
            self.stop_locked()
            self._error = Gone(why)  # every later call raises it too
            raise self._error

    def _wait_until(self, ready: Callable[[], bool]) -> None:
        while not ready():
            self._check()
            if ready():
                return
            self._cond.wait(self._stall_s / 4)

    def put(self, fn: Callable[[], Any]) -> None:
        """Queue fn(); returns at once (unless MAX_QUEUED calls wait for a busy server)."""
        with self._cond:
            self._check()
            if self._stopped:
                return
            self._wait_until(lambda: len(self._queue) < MAX_QUEUED or self._error is not None)
            self._check()
            self._queue.append((fn, None))
            self._cond.notify_all()

    def call(self, fn: Callable[[], Any]) -> Any:
        """fn()'s result, after every call queued before it; its error raised here."""
        done: list = []
        with self._cond:
            self._check()
            self._queue.append((fn, done))
            self._cond.notify_all()
            self._wait_until(lambda: bool(done) or self._error is not None)
            self._check()
        return done[0]

    @property
    def error(self) -> BaseException | None:
        """What stopped the sends (Gone: a stalled server found gone), or None."""
        return self._error

    def check(self) -> None:
        """Raise what a send failed with, or Gone for a stalled server that a probe finds gone."""
        with self._cond:
            self._check()

    def drain(self) -> None:
        """Send what is queued, then end the thread (the logger closes)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            self._wait_until(lambda: (not self._queue and self._since is None) or self._error is not None)
            self._check()
        self._thread.join(self._stall_s)

    def flush(self, timeout_s: float, last: Callable[[], Any]) -> bool:
        """Queue last() and wait `timeout_s` at most for it to be made, after what is queued
        (the process stops: at_stop). No probe, no error raised, no wait for a full queue:
        False when it was not made in time."""
        done: list = []
        deadline = time.monotonic() + timeout_s
        with self._cond:
            if self._stopped or self._ended:
                return False
            self._queue.append((last, done))
            self._cond.notify_all()
            while not done and not self._stopped:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return bool(done) and not isinstance(done[0], BaseException)

    def stop(self) -> None:
        with self._cond:
            self.stop_locked()

    def stop_locked(self) -> None:
        """Send nothing more; the thread ends once the call in flight returns."""
        self._stopped = True
        self._queue.clear()
        self._cond.notify_all()
