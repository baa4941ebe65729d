"""Start the crash driver (``journal_crash_driver.py``) as a real process, collect what it
acknowledged, and kill it with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

DRIVER = Path(__file__).with_name("journal_crash_driver.py")
READY_TIMEOUT_S = 300  # a cold numba cache in the child would compile (about a minute)


class Driver:
    """One driver process; its stdout lines are gathered by a thread as they arrive."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen([sys.executable, str(DRIVER), *map(str, args)], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, cwd=DRIVER.parent, env=dict(os.environ))
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.strip())
            if line.startswith("ready"):
                self.ready.set()
        self.ready.set()

    def wait_ready(self) -> int:
        if not self.ready.wait(READY_TIMEOUT_S) or not self.lines or not self.lines[0].startswith("ready"):
            self.kill()
            raise AssertionError(f"driver did not start: {self.lines} {self.proc.stderr.read()}")
        return int(self.lines[0].split()[1])

    def kill_after(self, seconds: float) -> None:
        time.sleep(seconds)
        self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.finish()

    def finish(self, timeout: float = 120) -> int:
        rc = self.proc.wait(timeout)
        self.reader.join(timeout)
        self.stderr = self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return rc

    @property
    def acks(self) -> list[int]:
        return [int(line.split()[1]) for line in self.lines if line.startswith("ack")]

    @property
    def done(self) -> bool:
        return "done" in self.lines
