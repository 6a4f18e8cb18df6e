"""Lineup files: the built-in lineups as files, a mixed file, one message per mistake, and the CLIs that read them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path

import pytest

from models.lineups import BUILTIN_LINEUPS, PRESETS, WEIGHTS, LineupFileError, get_lineup, lineup_from_file
from models.lineups.files import _Endpoint, _Params
from models.prompt_format import LLAMA2_DEFAULT_SYSTEM_PROMPT, llama2_prompt_text, validate_messages
from models.remote import RemoteStreamer
from models.specs import (
    REQUEST_FIELDS_ALWAYS,
    REQUEST_FIELDS_FROM,
    ContenderSpec,
    EndpointSpec,
    GenerationParams,
    public_url,
)

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
SECRET = "hunter2-not-a-real-key"
GOOD = '[[contenders]]\nname = "Good"\nweights = "smollm2-135m-instruct"\n'
MESSAGES = [{"role": "user", "content": "Name a prime number."}]


def write(folder: Path, text: str, name: str = "lineup.toml") -> Path:
    """A lineup file with `text` in `folder`."""
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def local(name: str, extra: str = "") -> str:
    """A contender on the Llama 2 7B weights, plus `extra` TOML lines."""
    return f'[[contenders]]\nname = "{name}"\nweights = "llama-2-7b-chat"\n{extra}'


def remote(endpoint: str, name: str = "Remote", extra: str = "") -> str:
    """A remote contender whose endpoint table holds `endpoint` (TOML lines), plus `extra` contender lines."""
    return f'[[contenders]]\nname = "{name}"\n{extra}[contenders.endpoint]\n{endpoint}\n'


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """A command of this repository run offline from its root, as a person would type it."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def sections(stdout: str) -> dict[str, str]:
    """`python -m models prompt` output as {header: text}."""
    found: dict[str, str] = {}
    for block in stdout.split("===== ")[1:]:
        header, _, text = block.partition(" =====\n")
        found[header] = text.removesuffix("\n")
    return found


# --- The built-in lineups, now files, are what they were in code -------------------------------------


def test_demo_file_is_the_demo_lineup():
    presets = ("precise", "balanced", "creative")
    expected = tuple(
        ContenderSpec(
            name=f"SmolLM2-135M ({p})",
            weights=WEIGHTS["smollm2-135m-instruct"],
            prompt_format="chat_template",
            params=PRESETS[p],
            system_prompt=None,
        )
        for p in presets
    )
    demo = lineup_from_file(BUILTIN_LINEUPS / "demo.toml")
    assert demo.name == "demo" and demo.contenders == expected
    assert get_lineup("demo") == demo


def test_llama2_file_is_the_llama2_lineup():
    expected = tuple(
        ContenderSpec(
            name=f"Llama-2-{size.upper()}-chat",
            weights=WEIGHTS[f"llama-2-{size}-chat"],
            prompt_format="llama2",
            params=PRESETS["llama2-chat"],
            system_prompt=LLAMA2_DEFAULT_SYSTEM_PROMPT,
            identity_words=("Llama", "LLaMA", "Meta", "Meta AI"),  # a blind vote naming them is set aside
        )
        for size in ("7b", "13b", "70b")
    )
    llama2 = lineup_from_file(BUILTIN_LINEUPS / "llama2.toml")
    assert llama2.name == "llama2" and llama2.contenders == expected
    assert get_lineup("llama2") == llama2


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_examples_parse(path: Path):
    lineup = lineup_from_file(path)
    assert lineup.name == path.stem and 2 <= len(lineup.contenders) <= 8


def test_llama2_vllm_example_sends_the_70b_our_prompt():
    lineup = lineup_from_file(EXAMPLES / "llama2-vllm.toml")
    local, remote = lineup.contenders[:2], lineup.contenders[2]
    assert [c.weights for c in local] == [WEIGHTS["llama-2-7b-chat"], WEIGHTS["llama-2-13b-chat"]]
    assert remote.name == "Llama-2-70B-chat" and remote.remote and remote.weights is None
    assert (remote.endpoint.prompt, remote.endpoint.api_key_env) == ("local", "VLLM_API_KEY")
    assert remote.endpoint.extra_params == ("top_k", "repetition_penalty")
    assert {c.system_prompt for c in lineup.contenders} == {LLAMA2_DEFAULT_SYSTEM_PROMPT}
    assert {c.params for c in lineup.contenders} == {PRESETS["llama2-chat"]}


def test_mixed_serve_example_keeps_its_extra_body():
    remote = lineup_from_file(EXAMPLES / "mixed-serve.toml").contenders[1]
    assert remote.endpoint.extra_body_dict == {"generation_config": '{"repetition_penalty": 1.1}'}


# --- A mixed file -----------------------------------------------------------------------------------

MIXED = """
name = "mixed"
description = "one of each"

[[contenders]]
name = "  Local folder  "
weights = "./ckpt"
preset = "llama2-chat"
params = { max_new_tokens = 128, temperature = 0.0 }

[[contenders]]
name = "GGUF beside the file"
weights = "model.Q4_K_M.gguf"
context_length = 2048

[[contenders]]
name = "Hub id"
weights = "org/name@v2"

[[contenders]]
name = "Remote 70B"
prompt_format = "llama2"
preset = "llama2-chat"
system_prompt = "Be brief."
[contenders.endpoint]
base_url = "https://gpu-box:8000/v1/"
model = "meta-llama/Llama-2-70b-chat-hf"
api_key_env = "VLLM_API_KEY"
max_concurrent = 16
prompt = "local"
connect_timeout_s = 2.5
chunk_timeout_s = 30
extra_params = ["top_k", "repetition_penalty"]
extra_body = { generation_config = { do_sample = true }, stop = ["</s>"] }
context_length = 4096
tokenizer = "llama-2-70b-chat"

[[contenders]]
name = "Remote counted by a folder"
[contenders.endpoint]
base_url = "http://127.0.0.1:8000/v1"
model = "tiny"
tokenizer = "./ckpt"
"""


def test_mixed_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    folder = tmp_path / "lineups"
    (folder / "ckpt").mkdir(parents=True)
    path = write(folder, MIXED)
    monkeypatch.chdir(tmp_path)  # relative weights follow the file, not the working directory
    lineup = lineup_from_file(path)
    assert (lineup.name, lineup.description) == ("mixed", "one of each")
    folder_c, gguf_c, hub_c, remote_c, counted_c = lineup.contenders
    assert folder_c.name == "Local folder" and folder_c.weights.id == str((folder / "ckpt").resolve())
    assert folder_c.params == replace(PRESETS["llama2-chat"], max_new_tokens=128, temperature=0.0)
    assert (gguf_c.weights.id, gguf_c.weights.gguf_file) == (str(folder.resolve()), "model.Q4_K_M.gguf")
    assert gguf_c.weights.context_length == 2048 and gguf_c.params == PRESETS["balanced"]
    assert (hub_c.weights.id, hub_c.weights.revision) == ("org/name", "v2")
    assert remote_c.weights is None and remote_c.system_prompt == "Be brief."
    assert remote_c.endpoint == EndpointSpec(
        base_url="https://gpu-box:8000/v1/",
        model="meta-llama/Llama-2-70b-chat-hf",
        api_key_env="VLLM_API_KEY",
        max_concurrent=16,
        prompt="local",
        connect_timeout_s=2.5,
        chunk_timeout_s=30,
        extra_params=("top_k", "repetition_penalty"),
        extra_body=remote_c.endpoint.extra_body,
        context_length=4096,
        tokenizer=WEIGHTS["llama-2-70b-chat"],
    )
    assert counted_c.endpoint.tokenizer == folder_c.weights and counted_c.endpoint.context_length is None
    assert isinstance(remote_c.endpoint.extra_body, str)
    body = {"generation_config": {"do_sample": True}, "stop": ["</s>"]}
    assert json.loads(remote_c.endpoint.extra_body) == body == remote_c.endpoint.extra_body_dict
    assert remote_c.endpoint.url == "https://gpu-box:8000/v1"
    assert lineup.weights == (folder_c.weights, gguf_c.weights, hub_c.weights)  # nothing to load for the server


def test_named_weights_take_a_context_length(tmp_path: Path):
    path = write(tmp_path, GOOD + local("Short", "context_length = 1024\n"))
    short = lineup_from_file(path).contenders[1].weights
    assert short == replace(WEIGHTS["llama-2-7b-chat"], context_length=1024)


# --- One message per mistake: the file, the contender and the field -------------------------------


def bad(text: str, contender: str | None, field: str | None, hidden: str = "", *, id: str) -> object:
    """A case: the file text, how the message names the contender, the field, text it must not repeat."""
    return pytest.param(text, contender, field, hidden, id=id)


URL = 'base_url = "http://gpu-box:8000/v1"\nmodel = "m"\n'
R = "contender 'Remote'"
BAD = [
    bad('titel = "x"\n' + GOOD * 2, None, "titel", id="unknown-top-level-key"),
    bad(
        GOOD + '[[contenders]]\nname = "Typo"\nwieghts = "x"\n',
        "contender 'Typo'",
        "wieghts",
        id="unknown-contender-key",
    ),
    bad(GOOD + remote(URL, extra='weights = "llama-2-7b-chat"\n'), R, "weights' or 'endpoint", id="both"),
    bad(GOOD + '[[contenders]]\nname = "None"\n', "contender 'None'", "weights' or 'endpoint", id="neither"),
    bad(GOOD + local("F", 'prompt_format = "llama3"\n'), "contender 'F'", "prompt_format", id="bad-prompt-format"),
    bad(GOOD + local("P", 'preset = "hot"\n'), "contender 'P'", "preset", id="unknown-preset"),
    bad(GOOD + local("P", 'preset = ["precise"]\n'), "contender 'P'", "preset", id="preset-not-text"),
    # Once reported as "field 'prompt_format': FILE: ... field 'params.temperature'": one message, not two.
    bad(
        GOOD + local("T", "params = { temperature = 9.0 }\n"),
        "contender 'T'",
        "params.temperature",
        "prompt_format",
        id="temperature-out-of-range",
    ),
    bad(
        GOOD + local("T", "params = { temperature = true }\n"),
        "contender 'T'",
        "params.temperature",
        id="temperature-not-a-number",
    ),
    bad(
        GOOD + local("T", "params = { temprature = 0.1 }\n"),
        "contender 'T'",
        "params.temprature",
        id="params-unknown-key",
    ),
    bad(GOOD + remote('model = "m"'), R, "endpoint.base_url", id="missing-base-url"),
    bad(GOOD + remote('base_url = "ftp://x"\nmodel = "m"'), R, "endpoint.base_url", id="base-url-not-http"),
    bad(
        GOOD + remote(f'base_url = "http://user:{SECRET}@h/v1"\nmodel = "m"'),
        R,
        "endpoint.base_url",
        SECRET,
        id="base-url-credentials",
    ),
    bad(
        GOOD + remote(f'base_url = "ftp://user:{SECRET}@h/v1"\nmodel = "m"'),
        R,
        "endpoint.base_url",
        SECRET,
        id="base-url-credentials-bad-scheme",
    ),
    bad(
        GOOD + remote(f'base_url = "http://h/v1?api_key={SECRET}"\nmodel = "m"'),
        R,
        "endpoint.base_url",
        SECRET,
        id="base-url-query",
    ),
    bad(GOOD + remote(URL + "max_concurrent = 0"), R, "endpoint.max_concurrent", id="max-concurrent-zero"),
    bad(GOOD + remote(URL + 'chunk_timeout_s = "fast"'), R, "endpoint.chunk_timeout_s", id="chunk-timeout-text"),
    bad(
        GOOD + remote(URL + 'prompt = "local"', extra='prompt_format = "chat_template"\n'),
        R,
        "endpoint.prompt",
        id="local-prompt-needs-llama2",
    ),
    bad(GOOD + remote(URL + 'extra_params = ["frequency"]'), R, "endpoint.extra_params", id="extra-params-unknown"),
    bad(GOOD + remote(URL + 'extra_params = [["top_k"]]'), R, "endpoint.extra_params", id="extra-params-nested"),
    bad(GOOD + remote(URL + "extra_body = { since = 2024-01-01 }"), R, "endpoint.extra_body", id="extra-body-date"),
    bad(GOOD + remote(URL + f'api_key = "{SECRET}"'), R, "endpoint.api_key", SECRET, id="unknown-endpoint-key"),
    bad(
        GOOD + remote(URL + f'api_key_env = "sk-{SECRET}"'),
        R,
        "endpoint.api_key_env",
        SECRET,
        id="api-key-env-holds-a-key",
    ),
    bad(GOOD + remote(URL, extra="context_length = 2048\n"), R, "context_length", id="context-length-on-a-server"),
    bad(GOOD + remote(URL + "context_length = 8"), R, "endpoint.context_length", id="endpoint-context-too-small"),
    bad(GOOD + remote(URL + 'context_length = "4k"'), R, "endpoint.context_length", id="endpoint-context-text"),
    bad(GOOD + remote(URL + 'tokenizer = "not a model"'), R, "endpoint.tokenizer", id="tokenizer-not-found"),
    bad(GOOD + remote(URL + "tokenizer = 7"), R, "endpoint.tokenizer", id="tokenizer-not-text"),
    bad(
        GOOD + '[[contenders]]\nname = "E"\nendpoint = "http://h/v1"\n',
        "contender 'E'",
        "endpoint",
        id="endpoint-not-a-table",
    ),
    bad(
        GOOD + local("W").replace("llama-2-7b-chat", "not a model"), "contender 'W'", "weights", id="weights-not-found"
    ),
    bad(GOOD + '[[contenders]]\nweights = "llama-2-7b-chat"\n', "contender #2", "name", id="no-name"),
    bad(GOOD + GOOD.replace('"Good"', '" Good "'), "contender #2 'Good'", "name", id="duplicate-names"),
    bad(GOOD, "contender 'Good'", "contenders", id="one-contender"),
    bad(
        GOOD + "".join(local(f"Good {n}") for n in range(2, 10)),
        "contender #9 'Good 9'",
        "contenders",
        id="nine-contenders",
    ),
    bad(GOOD + "[[contenders]\n", None, None, id="invalid-toml"),
    bad("name = 7\n" + GOOD * 2, None, "name", id="lineup-name-not-text"),
    bad('contenders = "Good"\n', None, "contenders", id="contenders-not-a-list"),
    bad(GOOD + local("C", "context_length = 8\n"), "contender 'C'", "context_length", id="context-too-small"),
    bad(GOOD + local("S", "system_prompt = 3\n"), "contender 'S'", "system_prompt", id="system-prompt-not-text"),
    bad(GOOD + local("P", 'params = "hot"\n'), "contender 'P'", "params", id="params-not-a-table"),
    bad(GOOD + remote(URL + "max_concurrent = true"), R, "endpoint.max_concurrent", id="max-concurrent-true"),
]


@pytest.mark.parametrize(("text", "contender", "field", "hidden"), BAD)
def test_a_bad_file_gets_one_message(tmp_path: Path, text: str, contender: str | None, field: str | None, hidden: str):
    path = write(tmp_path, text)
    with pytest.raises(LineupFileError) as caught:
        lineup_from_file(path)
    message = str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert message.startswith(f"{path}: ") and message.count(str(path)) == 1, message  # one message, not nested
    if contender:
        assert contender in message, message
    if field:
        assert f"field '{field}'" in message, message
    if hidden:
        assert hidden not in message


# A value of the wrong type is told what its field takes, and shown (never for an unknown field: a key).
WRONG_TYPE = {
    "endpoint-not-a-table": (
        '[[contenders]]\nname = "E"\nendpoint = "http://h/v1"\n',
        "contender 'E': field 'endpoint': must be a table with base_url and model, got 'http://h/v1'",
    ),
    "contenders-not-a-list": (
        'contenders = "Good"\n',
        "field 'contenders': must be a list of [[contenders]] tables, got 'Good'",
    ),
    "a-contender-not-a-table": ("contenders = [1, 2]\n", "contender #1: field 'contenders': must be a table, got 1"),
    "no-name": (
        '[[contenders]]\nweights = "llama-2-7b-chat"\n',
        "contender #2: field 'name': missing; add it to this table",
    ),
    "true-for-a-number": (
        local("T", "params = { temperature = true }\n"),
        "contender 'T': field 'params.temperature': must be a number, got True",
    ),
    "text-for-seconds": (
        remote(URL + 'chunk_timeout_s = "fast"'),
        f"{R}: field 'endpoint.chunk_timeout_s': must be a number of seconds in (0, 3600], got 'fast'",
    ),
    "text-for-context": (
        remote(URL + 'context_length = "4k"'),
        f"{R}: field 'endpoint.context_length': must be a whole number of tokens from 16 to 10000000, got '4k'",
    ),
    "true-for-a-limit": (
        remote(URL + "max_concurrent = true"),
        f"{R}: field 'endpoint.max_concurrent': must be a whole number of at least 1, got True",
    ),
    "prompt-format": (
        local("F", 'prompt_format = "llama3"\n'),
        "contender 'F': field 'prompt_format': must be 'llama2' or 'chat_template', got 'llama3'",
    ),
    "context-too-small": (
        local("C", "context_length = 8\n"),
        "contender 'C': field 'context_length': must be greater than or equal to 16, got 8",
    ),
    "extra-body-date": (
        remote(URL + "extra_body = { since = 2024-01-01 }"),
        f"{R}: field 'endpoint.extra_body': must be a JSON value (text, a number, a boolean, a list "
        "or a table), got datetime.date(2024, 1, 1)",
    ),
}


@pytest.mark.parametrize(("text", "expected"), WRONG_TYPE.values(), ids=WRONG_TYPE.keys())
def test_a_wrong_type_is_told_what_the_field_takes(tmp_path: Path, text: str, expected: str):
    path = write(tmp_path, text if text.startswith("contenders") else GOOD + text)
    with pytest.raises(LineupFileError) as caught:
        lineup_from_file(path)
    assert str(caught.value) == f"{path}: {expected}"


def test_the_file_takes_every_field_of_an_endpoint_and_of_params():
    """A field added to EndpointSpec or GenerationParams is one a lineup file can set."""
    assert set(_Endpoint.model_fields) == {f.name for f in fields(EndpointSpec)}
    assert set(_Params.model_fields) == {f.name for f in fields(GenerationParams)}


def test_typos_get_a_suggestion(tmp_path: Path):
    path = write(tmp_path, GOOD + '[[contenders]]\nname = "Typo"\nwieghts = "llama-2-7b-chat"\n')
    with pytest.raises(LineupFileError, match="did you mean 'weights'"):
        lineup_from_file(path)


def test_invalid_toml_says_where(tmp_path: Path):
    path = write(tmp_path, GOOD + "[[contenders]\n")
    with pytest.raises(LineupFileError, match=r"not valid TOML: .*line 4"):
        lineup_from_file(path)


def test_missing_file(tmp_path: Path):
    path = tmp_path / "absent.toml"
    with pytest.raises(LineupFileError, match=f"^{path}: no such lineup file$"):
        lineup_from_file(path)


def test_app_refuses_a_bad_file_with_one_line(tmp_path: Path):
    path = write(
        tmp_path,
        GOOD + remote(f'base_url = "http://user:{SECRET}@gpu-box:8000/v1"\nmodel = "m"', name="Llama-2-70B-chat"),
    )
    result = run("app.py", "--lineup-file", str(path))
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: {path}: contender 'Llama-2-70B-chat': field 'endpoint.base_url': base_url must not "
        "carry credentials (user:password@); put the key in the environment variable named by "
        "api_key_env"
    ]
    assert "Traceback" not in result.stderr and SECRET not in result.stderr + result.stdout


# Issue 15: tomllib recurses once per level, so these died with a 3,000-line RecursionError.
DEEP = {
    "lists": "x = " + "[" * 100_000 + "]" * 100_000 + "\n",
    "inline-tables": "x = " + "{a = " * 10_000 + "1" + "}" * 10_000 + "\n",
}


@pytest.mark.parametrize("nesting", DEEP.values(), ids=DEEP.keys())
def test_a_deeply_nested_file_gets_one_message(tmp_path: Path, nesting: str):
    path = write(tmp_path, nesting + GOOD * 2)
    with pytest.raises(LineupFileError) as caught:
        lineup_from_file(path)
    assert str(caught.value) == (
        f"{path}: lists or tables nested too deeply to read ([[[…]]] or {{a = {{a = …}}}}); "
        "a lineup file needs only a few levels (contenders, endpoint, params): remove the "
        "extra nesting"
    )


def test_app_refuses_a_deeply_nested_file_with_one_line(tmp_path: Path):
    path = write(tmp_path, DEEP["inline-tables"] + GOOD * 2)
    result = run("app.py", "--lineup-file", str(path))
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.splitlines() == [
        f"error: {path}: lists or tables nested too deeply to read ([[[…]]] or "
        "{a = {a = …}}); a lineup file needs only a few levels (contenders, "
        "endpoint, params): remove the extra nesting"
    ]


# --- python -m models prompt | plan ----------------------------------------------------------------


def test_prompt_command_renders_llama2_for_local_and_remote(tmp_path: Path):
    messages = write(tmp_path, json.dumps(MESSAGES), "messages.json")
    result = run("-m", "models", "prompt", "--lineup-file", "examples/llama2-vllm.toml", "--messages", str(messages))
    assert result.returncode == 0, result.stderr
    text = llama2_prompt_text(
        validate_messages([{"role": "system", "content": LLAMA2_DEFAULT_SYSTEM_PROMPT}, *MESSAGES])
    )
    assert sections(result.stdout) == {f"Llama-2-{size}-chat (llama2)": text for size in ("7B", "13B", "70B")}


def test_prompt_command_leaves_a_server_prompt_to_the_server(tmp_path: Path):
    lineup = write(
        tmp_path,
        local("Good", 'prompt_format = "llama2"\n')
        + remote('base_url = "http://127.0.0.1:9/v1/"\nmodel = "m"', extra='system_prompt = "Be brief."\n'),
    )
    messages = write(tmp_path, json.dumps(MESSAGES), "messages.json")
    result = run("-m", "models", "prompt", "--lineup-file", str(lineup), "--messages", str(messages))
    assert result.returncode == 0, result.stderr
    shown = sections(result.stdout)
    assert shown["Good (llama2)"] == llama2_prompt_text(MESSAGES)
    header, _, body = shown["Remote (chat_template)"].partition("\n")
    assert "rendered by the chat template of the server at http://127.0.0.1:9/v1;" in header
    assert json.loads(body) == [{"role": "system", "content": "Be brief."}, *MESSAGES]


def test_plan_command_places_only_local_weights():
    result = run(
        "-m",
        "models",
        "plan",
        "--lineup-file",
        "examples/llama2-vllm.toml",
        "--gpus",
        "2x80GiB",
        "--cpu-memory",
        "64GiB",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    planned = [model["name"] for model in json.loads(result.stdout)["models"]]
    assert sorted(planned) == ["meta-llama/Llama-2-13b-chat-hf", "meta-llama/Llama-2-7b-chat-hf"]


# --- No API key in a spec ---------------------------------------------------------------------------


def test_a_lineup_names_the_key_variable_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("VLLM_API_KEY", SECRET)
    lineup = lineup_from_file(EXAMPLES / "llama2-vllm.toml")
    endpoint = lineup.contenders[2].endpoint
    assert endpoint.api_key_env == "VLLM_API_KEY"
    assert SECRET not in repr(lineup) and SECRET not in endpoint.describe()


def test_endpoint_refuses_credentials_without_repeating_them():
    with pytest.raises(ValueError, match="must not carry credentials") as caught:
        EndpointSpec(base_url=f"http://user:{SECRET}@gpu-box:8000/v1", model="m")
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"http://user:{SECRET}@gpu-box:8000/v1/", "http://gpu-box:8000/v1"),
        (f"https://gpu-box/v1?key={SECRET}#top", "https://gpu-box/v1"),
        ("http://[::1]:8000/v1", "http://[::1]:8000/v1"),
    ],
)
def test_public_url_drops_credentials(url: str, shown: str):
    assert public_url(url) == shown


def test_url_and_describe_show_no_credentials():
    endpoint = EndpointSpec(base_url="http://gpu-box:8000/v1/", model="llama", api_key_env="VLLM_API_KEY")
    assert endpoint.url == "http://gpu-box:8000/v1"
    assert endpoint.describe() == "llama at http://gpu-box:8000/v1"
    assert ContenderSpec(name="x", endpoint=endpoint).source == endpoint.describe()


# --- api_key_env names a key, extra_body adds fields (issue 15) --------------------------------------

# Each value would go to the lineup's server as its bearer key.
NOT_KEYS = {
    "PLAYGROUND_ADMIN_TOKEN": "one of this app's own settings and secrets (PLAYGROUND_*)",
    "PLAYGROUND_VISITOR_SALT": "one of this app's own settings and secrets (PLAYGROUND_*)",
    "PLAYGROUND_DB_URL": "one of this app's own settings and secrets (PLAYGROUND_*)",
    "PATH": "a system variable, not an API key",
    "Path": "a system variable, not an API key",
    "HOME": "a system variable, not an API key",
    "LC_ALL": "a system variable, not an API key",
}


@pytest.mark.parametrize(("variable", "why"), NOT_KEYS.items(), ids=NOT_KEYS.keys())
def test_api_key_env_refuses_variables_that_are_not_a_servers_key(tmp_path: Path, variable: str, why: str):
    path = write(tmp_path, GOOD + remote(URL + f'api_key_env = "{variable}"'))
    with pytest.raises(LineupFileError) as caught:
        lineup_from_file(path)
    assert str(caught.value) == (
        f"{path}: {R}: field 'endpoint.api_key_env': api_key_env names {variable}, {why}: "
        "its value would be sent to the contender's server as its API key; name a variable "
        "that holds only that server's key, such as OPENAI_API_KEY or VLLM_API_KEY"
    )


@pytest.mark.parametrize("variable", ["OPENAI_API_KEY", "VLLM_API_KEY", "HF_TOKEN", "MY_PATH_KEY"])
def test_api_key_env_takes_a_keys_variable(tmp_path: Path, variable: str):
    path = write(tmp_path, GOOD + remote(URL + f'api_key_env = "{variable}"'))
    assert lineup_from_file(path).contenders[1].endpoint.api_key_env == variable


def test_extra_body_refuses_exactly_the_fields_the_app_sends():
    """The refused set is what RemoteStreamer.request writes, for both APIs and every extra param."""
    endpoint = EndpointSpec(base_url="http://gpu-box:8000/v1", model="m", extra_params=("top_k", "repetition_penalty"))
    sent: set[str] = set()
    for contender in (
        ContenderSpec(name="chat", endpoint=endpoint),
        ContenderSpec(name="local", endpoint=replace(endpoint, prompt="local"), prompt_format="llama2"),
    ):
        _, body, _ = RemoteStreamer([contender], env={}).request(contender, MESSAGES, PRESETS["balanced"], seed=1)
        sent |= set(body)
    assert sent == set(REQUEST_FIELDS_FROM) | set(REQUEST_FIELDS_ALWAYS)


@pytest.mark.parametrize("key", sorted({*REQUEST_FIELDS_FROM, *REQUEST_FIELDS_ALWAYS}))
def test_extra_body_may_not_override_what_the_app_sends(tmp_path: Path, key: str):
    path = write(tmp_path, GOOD + remote(URL + f'extra_body = {{ stop = ["</s>"], {key} = false }}'))
    with pytest.raises(LineupFileError) as caught:
        lineup_from_file(path)
    message = str(caught.value)
    assert message.startswith(
        f"{path}: {R}: field 'endpoint.extra_body': extra_body must not set {key!r}: the app sets it in every request"
    ), message
    assert ("; use " if key in REQUEST_FIELDS_FROM else "; remove it") in message


def test_extra_body_model_and_stream_messages(tmp_path: Path):
    path = write(tmp_path, GOOD + remote(URL + 'extra_body = { model = "other", stream = false }'))
    with pytest.raises(LineupFileError) as caught:
        lineup_from_file(path)
    assert str(caught.value) == (
        f"{path}: {R}: field 'endpoint.extra_body': extra_body must not set 'model': the app "
        "sets it in every request from the contender's own fields; use endpoint.model instead"
    )
    with pytest.raises(
        ValueError,
        match="^extra_body must not set 'stream': the app sets it in every request "
        r"\(every answer is streamed\); remove it$",
    ):
        EndpointSpec(base_url="http://gpu-box:8000/v1", model="m", extra_body='{"stream": false}')


def test_identity_words_are_a_list_of_words(tmp_path: Path):
    path = write(tmp_path, local("W", 'identity_words = ["Llama", " Meta "]\n') + GOOD)
    assert lineup_from_file(path).contenders[0].identity_words == ("Llama", "Meta")
    with pytest.raises(LineupFileError, match="field 'identity_words': must be a list of words naming the model"):
        lineup_from_file(write(tmp_path, local("W", 'identity_words = "Llama"\n') + GOOD))
