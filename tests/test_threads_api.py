"""The thread controls: get/set_num_threads, threads(), OMP_NUM_THREADS and threadpoolctl."""
# The OS-thread cases run in a fresh interpreter and count the process's OS threads
# (/proc/self/task) before and after one large call: OpenMP starts its worker threads at the
# first parallel region and keeps them, so the growth is the team size minus one.  (Results
# that do not depend on the thread count: test_determinism.py.)
import json
import os
import subprocess
import sys
import threading

import pytest

import fastnll
from fastnll import _dispatch


def OS_THREADS(test):
    """Linux (counts /proc/self/task) and an OpenMP build only."""
    test = pytest.mark.skipif(not sys.platform.startswith("linux"),
                              reason="counts /proc/self/task")(test)
    return pytest.mark.skipif(not _dispatch.kernels.built_with_openmp(),
                              reason="serial build")(test)


def test_thread_controls():
    before = fastnll.get_num_threads()
    assert isinstance(before, int) and before >= 1
    with fastnll.threads(3):
        assert fastnll.get_num_threads() == 3
        with fastnll.threads(1):
            assert fastnll.get_num_threads() == 1
        assert fastnll.get_num_threads() == 3
    assert fastnll.get_num_threads() == before
    try:
        fastnll.set_num_threads(2)
        assert fastnll.get_num_threads() == 2
    finally:
        fastnll.set_num_threads(None)
    assert fastnll.get_num_threads() == before
    # (bad counts: the set_num_threads-* and threads-* rows of test_errors.py)
    with pytest.raises(RuntimeError):
        with fastnll.threads(2):
            raise RuntimeError("boom")
    assert fastnll.get_num_threads() == before


def test_threads_blocks_in_different_python_threads_do_not_interfere():
    before = fastnll.get_num_threads()
    seen, errors = {}, []
    inside = threading.Barrier(2)

    def worker(n):
        try:
            with fastnll.threads(n):
                inside.wait(timeout=10)           # both blocks are open at once
                seen[n] = fastnll.get_num_threads()
                inside.wait(timeout=10)
        except Exception as exc:                  # pragma: no cover
            errors.append(exc)

    ts = [threading.Thread(target=worker, args=(n,)) for n in (1, 3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    assert seen == {1: 1, 3: 3}
    assert fastnll.get_num_threads() == before


# -------------------------------------------------- OS threads really started (Linux) ----

SCRIPT = r"""
import json, os, sys
import numpy as np
import fastnll

def count():
    return len(os.listdir("/proc/self/task"))

x = np.zeros((512, 256), np.float32)         # 131072 elements: a threaded call
t = np.zeros(512, np.int64)
how, n = sys.argv[1], int(sys.argv[2])
before = count()
if how == "threadpoolctl":
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=n, user_api="openmp"):
        got = fastnll.get_num_threads()
        fastnll.cross_entropy(x, t)
elif how == "set_num_threads":
    fastnll.set_num_threads(n)
    got = fastnll.get_num_threads()
    fastnll.cross_entropy(x, t)
elif how == "threads":
    with fastnll.threads(n):
        got = fastnll.get_num_threads()
        fastnll.cross_entropy(x, t)
else:
    got = fastnll.get_num_threads()
    fastnll.cross_entropy(x, t)
print(json.dumps({"get": got, "team": count() - before + 1}))
"""


def _run(how, n, omp_num_threads=None):
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if omp_num_threads is not None:
        env["OMP_NUM_THREADS"] = str(omp_num_threads)
    # the subprocess must import the same fastnll as this test session
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(fastnll.__file__))
    out = subprocess.run([sys.executable, "-c", SCRIPT, how, str(n)], env=env, check=True,
                         capture_output=True, text=True, cwd=os.path.dirname(__file__))
    return json.loads(out.stdout.strip().splitlines()[-1])


@OS_THREADS
@pytest.mark.parametrize("n", [1, 3])
def test_omp_num_threads_is_honoured(n):
    assert _run("default", 0, omp_num_threads=n) == {"get": n, "team": n}


@OS_THREADS
@pytest.mark.parametrize("n", [1, 3])
def test_threadpoolctl_limits_are_honoured(n):
    pytest.importorskip("threadpoolctl")
    assert _run("threadpoolctl", n) == {"get": n, "team": n}


@OS_THREADS
@pytest.mark.parametrize("how", ["set_num_threads", "threads"])
def test_fastnll_setting_overrides_omp_num_threads(how):
    assert _run(how, 3, omp_num_threads=1) == {"get": 3, "team": 3}
