"""Loading by the plan: `python -m models plan`, planned options, and the same answers wherever a model lives."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

from models.lineups import adhoc_lineup, get_lineup, weights_from_reference
from models.loading import LoadOptions, load_weights, planned_options
from models.local import GenerationResult, stream_tokens
from models.placement import parse_gpus
from models.specs import GenerationParams
from tests.conftest import REPO

GREEDY = GenerationParams(temperature=0.0, top_p=1.0, top_k=0, repetition_penalty=1.0, max_new_tokens=20)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "models", "plan", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )


def test_plan_command_prints_the_table_without_a_gpu():
    run = run_cli("--lineup", "llama2", "--gpus", "4x80GiB", "--cpu-memory", "256GiB")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "Plan for 4x80GiB, batch size 1, CPU RAM 256.0 GiB"
    for column in (
        "model",
        "dtype/quant",
        "weights GiB",
        "KV-cache GiB",
        "GPUs",
        "decoder layers per device",
        "spare GiB",
    ):
        assert column in lines[1]
    rows = {line.split()[0]: line.split() for line in lines[2:5]}
    assert rows["meta-llama/Llama-2-70b-chat-hf"][1:6] == ["float16", "128.5", "1.2", "0,1", "0:40"]
    assert rows["meta-llama/Llama-2-7b-chat-hf"][4] == "3" and rows["meta-llama/Llama-2-13b-chat-hf"][4] == "2"
    assert "Warnings" not in run.stdout


def test_plan_command_json_and_warnings():
    run = run_cli("--lineup", "llama2", "--gpus", "2x80GiB", "--cpu-memory", "256GiB", "--json")
    assert run.returncode == 0, run.stderr
    plan = json.loads(run.stdout)
    by_name = {m["name"]: m for m in plan["models"]}
    assert by_name["meta-llama/Llama-2-70b-chat-hf"]["quantization"] == "int8"
    assert by_name["meta-llama/Llama-2-70b-chat-hf"]["bitsandbytes"] == {"load_in_8bit": True}
    assert any("8-bit" in w and "slower" in w for w in plan["warnings"])


def test_plan_command_refuses_with_numbers_and_bad_input_with_an_example():
    run = run_cli("--lineup", "llama2", "--gpus", "1x24GiB", "--cpu-memory", "16GiB", "--no-offload")
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert re_number(run.stderr, "needs") and "available" in run.stderr
    bad = run_cli("--lineup", "llama2", "--gpus", "lots")
    assert bad.returncode == 2 and "e.g. 4x80GiB" in bad.stderr


def re_number(text: str, word: str) -> bool:
    import re

    return bool(re.search(rf"{word}[^0-9]*\d+\.\d GiB", text))


def test_planned_options_follow_the_plan():
    plan, options = planned_options(get_lineup("llama2"), gpus=parse_gpus("2x80GiB"))
    by_id = {w.id: o for w, o in options.items()}
    big = by_id["meta-llama/Llama-2-70b-chat-hf"]
    assert big.quantization == {"load_in_8bit": True} and big.dtype == "float16"
    assert set(big.device_map.values()) == {0}
    assert set(by_id["meta-llama/Llama-2-7b-chat-hf"].device_map.values()) == {1}
    assert plan.models[2].name == "meta-llama/Llama-2-70b-chat-hf"


def test_without_gpus_the_plan_puts_everything_on_the_cpu(tiny_mha, tiny_gqa):
    _, options = planned_options(adhoc_lineup([str(tiny_mha), str(tiny_gqa)]), gpus=())
    assert all(o.device_map == {"": "cpu"} and o.quantization is None for o in options.values())


def greedy_text(loaded) -> GenerationResult:
    ids = loaded.tokenizer.encode("What is the capital of France?")
    *_, result = stream_tokens(loaded, ids, GREEDY, stop=threading.Event(), seed=0, context_length=512)
    return result


@pytest.mark.parametrize("checkpoint", ["tiny_mha", "tiny_gqa"])
def test_offloaded_to_cpu_and_disk_gives_the_same_greedy_tokens(checkpoint, request, tmp_path):
    folder = str(request.getfixturevalue(checkpoint))
    weights = weights_from_reference(folder)
    whole = load_weights(weights, LoadOptions(dtype="float32", device_map="cpu"), log=lambda m: None)
    # Half the decoder layers and the head on disk, the rest in RAM: accelerate's offload hooks.
    device_map = {
        "model.embed_tokens": "cpu",
        "model.layers.0": "cpu",
        "model.layers.1": "disk",
        "model.layers.2": "cpu",
        "model.layers.3": "disk",
        "model.norm": "cpu",
        "model.rotary_emb": "cpu",
        "lm_head": "disk",
    }
    offloaded = load_weights(
        weights,
        LoadOptions(dtype="float32", device_map=device_map, offload_folder=tmp_path / "offload"),
        log=lambda m: None,
    )
    assert set(offloaded.model.hf_device_map.values()) == {"cpu", "disk"}
    # Disk layers are not resident: their weights are read from the checkpoint at each forward.
    layers = offloaded.model.model.layers
    assert layers[1].self_attn.q_proj.weight.device.type == "meta"
    assert layers[0].self_attn.q_proj.weight.device.type == "cpu"
    expected, got = greedy_text(whole), greedy_text(offloaded)
    assert got.text == expected.text and got.completion_tokens == expected.completion_tokens
