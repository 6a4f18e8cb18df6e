"""Three contenders of the demo lineup answering at once through the comparison core (no page).

  python bench/concurrent_panes.py [--tokens 64] [--rounds 3]
Prints per comparison the wall time, pane snapshots sent, and the aggregate and per-pane tokens/s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from feedback_db import open_database, sqlite_url  # noqa: E402
from models.lineups import get_lineup  # noqa: E402
from models.loading import LoadOptions, load_lineup  # noqa: E402
from models.local import LocalStreamer  # noqa: E402
from playground.comparison import Playground  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    lineup = get_lineup("demo")
    with ThreadPoolExecutor(1) as loader:  # as the app loads: not in the main thread
        loaded = loader.submit(load_lineup, lineup, LoadOptions(device_map="cpu"), lambda m: None).result()
    with tempfile.TemporaryDirectory() as folder:
        core = Playground(lineup, LocalStreamer(loaded), open_database(sqlite_url(Path(folder) / "b.sqlite3")))
        for _ in range(args.rounds):
            session = core.new_conversation()
            # Sampled, so no pane stops early on EOS alone.
            core.set_overrides(session, {"max_new_tokens": args.tokens, "temperature": 0.7})
            started, snapshots = time.perf_counter(), 0
            for _ in core.ask(session, "Write a story about a lighthouse keeper."):
                snapshots += 1
            seconds = time.perf_counter() - started
            tokens = sum(p.result.completion_tokens for p in session.panes)
            per_pane = ", ".join(f"{p.result.tokens_per_s or 0:.1f}" for p in session.panes)
            print(
                f"{seconds:.1f} s, {snapshots} snapshots, {tokens} tokens: {tokens / seconds:.1f} tok/s "
                f"together; per pane {per_pane} tok/s"
            )
        core.database.dispose()


if __name__ == "__main__":
    main()
