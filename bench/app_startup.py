"""Cold and warm start of the app on the embedded model, then one comparison through the page's API.

  python bench/app_startup.py [--prompt "What is the capital of France?"]
Cold: an empty model cache (the GGUF is converted); warm: the converted cache is reused.
Prints seconds from process start until the page answers, then per pane: time to first token,
tokens/s and tokens, as the page shows them.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(cache: Path, data: Path, port: int) -> tuple[subprocess.Popen, float]:
    """Start app.py and return it with the seconds until its page answered."""
    env = dict(os.environ, PLAYGROUND_CACHE_DIR=str(cache), HF_HUB_OFFLINE="1")
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port), "--data-dir", str(data)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while True:
        if process.poll() is not None:
            raise SystemExit(f"app.py exited with {process.returncode}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
            return process, time.perf_counter() - started
        except OSError:
            time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompt", default="What is the capital of France?")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cache, data = Path(tmp) / "cache", Path(tmp) / "data"
        for label in ("cold", "warm"):
            port = free_port()
            process, seconds = start(cache, data, port)
            print(f"{label} start: {seconds:.1f} s until the page answered")
            if label == "warm":
                from gradio_client import Client

                client = Client(f"http://127.0.0.1:{port}/", verbose=False)
                for attempt in ("first", "second"):  # the first pays for kernel warm-up per shape
                    started = time.perf_counter()
                    result = client.predict(args.prompt, "", api_name="/ask")
                    print(
                        f"{attempt} comparison of {args.prompt!r}: {time.perf_counter() - started:.1f} s for all panes"
                    )
                    panes = [r for r in result if isinstance(r, dict) and "label" in r]
                    for pane, stats in zip(panes, result[len(panes) : 2 * len(panes)]):
                        content = pane["value"][-1]["content"]
                        text = content if isinstance(content, str) else content[0]["text"]
                        print(f"  {pane['label']}: {stats}\n    {text[:100]!r}")
                    client.predict(api_name="/clear")
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
