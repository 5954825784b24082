"""fork(): a child process can use the library, layers made before the fork included, while
other threads of the parent were inside calls at the fork. Every wait has a timeout, so a
deadlock in a child fails the test instead of hanging it."""

import multiprocessing
import os
import signal
import threading
import time

import numpy as np
import pytest

import attention
from test_threads import _workload

# Python 3.12+ warns that forking a multithreaded process may deadlock: that is under test.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TIMEOUT = 60  # seconds for any child

_CALLS = []  # the parent's workload; forked children inherit it


def _results(_=None):
    """Every call of the workload, as a list of tuples of arrays."""
    return [tuple(np.asarray(r) for r in call()) for call in _CALLS]


def _mismatches(got, want):
    """Indices of the calls whose results are not, bit for bit, the expected ones."""
    return [at for at, (g, w) in enumerate(zip(got, want))
            if len(g) != len(w) or any(a.dtype != b.dtype or a.shape != b.shape or a.tobytes() != b.tobytes()
                                       for a, b in zip(g, w))]


def _wait(pid, timeout=TIMEOUT):
    """The child's exit status; kills it and fails the test when it outlives `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"the forked child did not finish within {timeout} s (a deadlock?)")


@pytest.fixture
def workload():
    _CALLS[:] = _workload()
    yield _results()  # the parent's results; the first calls build the layers
    _CALLS.clear()


def test_fork_pool_workers_match_the_parent(workload):
    context = multiprocessing.get_context("fork")
    with context.Pool(4) as pool:
        runs = pool.map_async(_results, range(8)).get(timeout=TIMEOUT)
    assert len(runs) == 8
    for got in runs:
        assert _mismatches(got, workload) == []


def test_os_fork_while_another_thread_is_inside_a_call(workload):
    """The parent forks while a thread is inside long calls of `big` (ctypes released the
    GIL); the child calls every layer, and sets big's weights and calls it: the parent's call
    does not exist in the child, so big is not in use there (no LayerBusyError)."""
    rng = np.random.default_rng(21)
    x = rng.normal(size=(1, 3072, 32))
    big = attention.MultiHeadAttention(4, 16, seed=1)
    small = x[:, :8]
    want_small = big(small, small)
    started = threading.Event()

    def long_calls():
        started.set()
        for _ in range(6):
            big(x, x)

    thread = threading.Thread(target=long_calls)
    thread.start()
    started.wait()
    time.sleep(0.02)
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            wrong = _mismatches(_results(), workload)
            big.set_weights(big.get_weights())
            attention.set_num_threads(4)
            same = np.array_equal(big(small, small), want_small)
            code = 0 if not wrong and same else 2
        finally:
            os._exit(code)
    status = _wait(pid)
    thread.join(timeout=TIMEOUT)
    assert not thread.is_alive()
    assert os.WIFEXITED(status), f"the child died of signal {os.WTERMSIG(status)}"
    assert os.WEXITSTATUS(status) == 0, ("the child's results differ" if os.WEXITSTATUS(status) == 2
                                         else "the child raised (LayerBusyError?)")
