"""Closing the engines: running streams end as stopped, the threads are joined, and a process that exits
while an engine decodes exits cleanly (issue 15: the batched loop's daemon thread aborted it)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from models.engines import BatchedLoop, ContinuousEngine, Finished
from tests.conftest import REPO
from tests.test_engines import OFFLOAD_MAP, PROMPTS, greedy, load, request
from tests.waiting import until

# Loads the checkpoint as the app does (LocalStreamer builds the engine its placement needs, unless
# "continuous" asks for that engine itself), starts a long greedy stream without stop tokens, and exits
# from the consuming thread once tokens flow.
EXIT_MID_DECODE = """
import json, sys, threading
from models.engines.protocol import StreamRequest
from models.engines import ContinuousEngine
from models.local import LocalStreamer
from models.loading import LoadOptions, load_weights
from models.lineups.registry import weights_from_reference
from models.specs import GenerationParams

path, device_map, offload, kind = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
spec = weights_from_reference(path)
loaded = load_weights(spec, LoadOptions(dtype="float32", device_map=device_map, offload_folder=offload),
                      log=lambda m: None)
if kind == "continuous":
    engine = ContinuousEngine(loaded.model, cache_tokens=2048, max_batch_tokens=64)
else:
    engine = LocalStreamer({spec: loaded}, kv_cache_gib=0.01).engines[spec]
print(type(engine).__name__, flush=True)
params = GenerationParams(temperature=0.0, top_p=1.0, top_k=0, max_new_tokens=400)
stream = StreamRequest(prompt_ids=loaded.tokenizer.encode("Tell me a story"), params=params, seed=0,
                       stop=threading.Event(), max_new_tokens=400)
for count, event in enumerate(engine.generate(stream)):
    if count == 20:
        print("exiting while it decodes", flush=True)
        sys.exit(0)
print("the stream ended before the exit", flush=True)
"""


@pytest.mark.parametrize(
    ("kind", "device_map", "engine"),
    [("BatchedLoop", OFFLOAD_MAP, "app"), ("BatchedLoop", "cpu", "app"), ("ContinuousEngine", "cpu", "continuous")],
    ids=["loop-split", "loop-cpu", "continuous"],
)
def test_a_process_that_exits_while_an_engine_decodes_exits_cleanly(
    tiny_mha: Path, tmp_path: Path, kind: str, device_map, engine: str
):
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            EXIT_MID_DECODE,
            str(tiny_mha),
            json.dumps(device_map),
            str(tmp_path / "offload"),
            engine,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.stdout.splitlines() == [kind, "exiting while it decodes"], result.stdout + result.stderr[-3000:]
    assert result.returncode == 0, result.stderr[-3000:]
    assert "terminate called" not in result.stderr and "Traceback" not in result.stderr, result.stderr[-3000:]


def make(kind: str, tiny: Path):
    """An engine of this kind on the tiny checkpoint, its weights split over the CPU and the disk for the loop."""
    if kind == "loop":
        loaded = load(tiny, device_map=OFFLOAD_MAP)
        return loaded, BatchedLoop(loaded.model, loaded.input_device)
    loaded = load(tiny)
    return loaded, ContinuousEngine(loaded.model, cache_tokens=2048, max_batch_tokens=64)


@pytest.mark.parametrize("kind", ["loop", "continuous"])
def test_close_stops_running_streams_joins_its_threads_and_is_safe_twice(tiny_mha: Path, kind: str):
    before = set(threading.enumerate())
    loaded, engine = make(kind, tiny_mha)
    events: list = []

    def consume() -> None:
        events.extend(engine.generate(request(loaded, PROMPTS[1], greedy(400))))

    consumer = threading.Thread(target=consume)
    consumer.start()
    until(lambda: len(events) >= 3 or not consumer.is_alive(), 60, every_s=0.005, what="three tokens")
    assert consumer.is_alive()
    engine.close()
    consumer.join(30)
    assert not consumer.is_alive() and events[-1] == Finished("stopped") and len(events) < 400
    assert [t.name for t in set(threading.enumerate()) - before if t is not consumer] == []  # joined, not left
    started = time.monotonic()
    engine.close()
    assert list(engine.generate(request(loaded, PROMPTS[0], greedy(10)))) == [Finished("stopped")]
    assert time.monotonic() - started < 1.0


def test_close_waits_a_bounded_time_for_a_step_that_does_not_end(tiny_mha: Path, monkeypatch: pytest.MonkeyPatch):
    loaded, engine = make("loop", tiny_mha)
    forward, entered, release = loaded.model.forward, threading.Event(), threading.Event()

    def stuck_forward(*args, **kwargs):  # a step that takes far longer than close may wait
        if kwargs["input_ids"].shape[1] == 1:
            entered.set()
            release.wait(60)
        return forward(*args, **kwargs)

    monkeypatch.setattr(loaded.model, "forward", stuck_forward)
    events: list = []
    consumer = threading.Thread(target=lambda: events.extend(engine.generate(request(loaded, PROMPTS[0], greedy(50)))))
    consumer.start()
    assert entered.wait(60)
    started = time.monotonic()
    engine.close(timeout_s=0.5)
    assert 0.4 < time.monotonic() - started < 5
    release.set()  # the step ends; the loop sees it is closed and ends the stream
    consumer.join(30)
    assert events[-1] == Finished("stopped")
