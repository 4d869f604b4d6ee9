"""Runs a test server (`mlflow server ...`, `python -m llama_cpp.server ...`) in
its own process group and stops the whole group when the test process that
started this guard exits (whatever the cause), so test servers never outlive
their tests."""
import os
import signal
import subprocess
import sys
import time

parent = os.getppid()
child = subprocess.Popen(sys.argv[1:], start_new_session=True)


def stop(*_):
    try:
        os.killpg(child.pid, signal.SIGTERM)
        child.wait(timeout=10)
    except Exception:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except Exception:
            pass
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
while child.poll() is None:
    if os.getppid() != parent:
        stop()
    time.sleep(0.3)
sys.exit(child.returncode or 0)
