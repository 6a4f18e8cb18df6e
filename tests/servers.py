"""Real OpenAI-compatible servers for the remote-contender tests, started and stopped by fixtures."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Sequence

import pytest

from tests.conftest import REPO

START_TIMEOUT_S = 180.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """A server process on loopback; `base_url` ends in /v1."""

    def __init__(self, command: Sequence[str], port: int, log: Path, *, cwd: Path | None = None,
                 health: str = "/health") -> None:
        self.port, self.log_path = port, log
        self.base_url = f"http://127.0.0.1:{port}/v1"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        self._log = log.open("wb")
        # Its own process group: a kill reaches the server and any worker it started.
        self.process = subprocess.Popen(list(command), cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        self._wait_ready(f"http://127.0.0.1:{port}{health}")

    def _wait_ready(self, url: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"the server did not answer {url} within {START_TIMEOUT_S:.0f} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def signal(self, number: int) -> None:
        os.killpg(self.process.pid, number)

    def kill(self) -> None:
        """Die at once, as a crashed server does."""
        if self.process.poll() is None:
            self.signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.signal(signal.SIGCONT)  # a test may have paused it
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


def transformers_serve(folder: Path | None, log: Path, *, port: int | None = None) -> Server:
    """`transformers serve` on CPU in float32, pinned to `folder` (None: any model a request names)."""
    executable = shutil.which("transformers", path=str(Path(sys.executable).parent))
    if executable is None:
        pytest.fail("`transformers serve` is missing: install requirements-dev.txt (transformers[serving])")
    command = [executable, "serve", *([str(folder)] if folder else []), "--host", "127.0.0.1",
               "--port", str(port or free_port()), "--device", "cpu", "--dtype", "float32"]
    return Server(command, int(command[command.index("--port") + 1]), log, cwd=REPO)
