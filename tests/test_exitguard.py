"""The exit guard (tests/support/exitguard.py): a test run whose process would hang at
exit on a stuck thread ends red, with the stuck thread's stack."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_pytest(directory, test_source):
    (directory / "pytest.ini").write_text("[pytest]\naddopts = -p tests.support.exitguard\nexit_deadline_secs = 2\n")
    (directory / "test_it.py").write_text(textwrap.dedent(test_source))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:django", "test_it.py"],
        cwd=directory,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_stuck_thread_ends_the_run_red(tmp_path):
    """A passing test that leaves a non-daemon thread blocked: the process exits 1 within
    the deadline and prints where that thread is stuck."""
    result = run_pytest(
        tmp_path,
        """
        import threading

        def test_leaves_a_stuck_thread():
            threading.Thread(target=threading.Event().wait, name="stuck", daemon=False).start()
        """,
    )
    assert result.returncode == 1
    assert "1 passed" in result.stdout
    assert "in wait" in result.stderr


def test_clean_run_exits_with_its_status(tmp_path):
    """A run that leaves nothing behind exits 0 at once, the guard never firing."""
    result = run_pytest(tmp_path, "def test_passes():\n    pass\n")
    assert result.returncode == 0, result.stderr
    assert "Thread" not in result.stderr
