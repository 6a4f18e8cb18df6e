"""Real OpenAI-compatible servers for the remote-contender tests, started and stopped by fixtures."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Sequence

import pytest

from tests.conftest import REPO
from tests.waiting import until

START_TIMEOUT_S = 180.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_serving(
    process: subprocess.Popen, url: str, timeout_s: float, log: Callable[[], str] = lambda: ""
) -> None:
    """Return once `url` answers 200; fail with the process's log if it exits first or time runs out."""

    def serving() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"{' '.join(map(str, process.args[:2]))} exited with {process.returncode}:\n{log()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return answer.status == 200
        except OSError:  # URLError too: not listening yet
            return False

    try:
        until(serving, timeout_s, every_s=0.2, what=f"{url} to answer")
    except AssertionError as error:
        error.add_note(log())
        raise


class Server:
    """A server process on loopback; `base_url` ends in /v1."""

    def __init__(
        self, command: Sequence[str], port: int, log: Path, *, cwd: Path | None = None, health: str = "/health"
    ) -> None:
        self.port, self.log_path = port, log
        self.base_url = f"http://127.0.0.1:{port}/v1"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        self._log = log.open("wb")
        # Its own process group: a kill reaches the server and any worker it started.
        self.process = subprocess.Popen(
            list(command), cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._wait_ready(f"http://127.0.0.1:{port}{health}")

    def _wait_ready(self, url: str) -> None:
        try:
            wait_until_serving(self.process, url, START_TIMEOUT_S, self.log)
        except AssertionError:
            self.stop()
            raise

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
    command = [
        executable,
        "serve",
        *([str(folder)] if folder else []),
        "--host",
        "127.0.0.1",
        "--port",
        str(port or free_port()),
        "--device",
        "cpu",
        "--dtype",
        "float32",
    ]
    return Server(command, int(command[command.index("--port") + 1]), log, cwd=REPO)
