"""Lineups as data, ad-hoc references, and loading through the real `from_pretrained` path."""

from __future__ import annotations

import pytest

from models.embedded import EMBEDDED_ID
from models.lineups import PRESETS, WEIGHTS, adhoc_lineup, get_lineup, lineup_names, weights_from_reference
from models.loading import LoadOptions, WeightsNotFound, check_available, load_lineup, resolve_dtype
from models.specs import GenerationParams, LineupSpec


def test_named_lineups_use_registered_weights():
    assert {"demo", "llama2"} <= set(lineup_names())
    for name in lineup_names():
        lineup = get_lineup(name)
        assert 2 <= len(lineup.contenders) <= 4
        for contender in lineup.contenders:
            assert contender.weights in WEIGHTS.values(), contender.name


def test_demo_is_one_weights_three_presets():
    demo = get_lineup("demo")
    assert len(demo.contenders) == 3 and len(demo.weights) == 1
    assert demo.weights[0].id == EMBEDDED_ID
    assert len({c.params for c in demo.contenders}) == 3


def test_llama2_lineup_matches_the_design():
    lineup = get_lineup("llama2")
    ids = [c.weights.id for c in lineup.contenders]
    assert ids == [f"meta-llama/Llama-2-{s}-chat-hf" for s in ("7b", "13b", "70b")]
    for contender in lineup.contenders:
        assert contender.prompt_format == "llama2"
        assert contender.weights.context_length == 4096 and contender.weights.gated
        assert contender.system_prompt.startswith("You are a helpful, respectful and honest assistant")


def test_unknown_lineup_lists_the_known_ones():
    with pytest.raises(KeyError, match="known lineups: demo, llama2"):
        get_lineup("nope")


def test_references(tmp_path, tiny_mha):
    gguf = weights_from_reference(str(tmp_path / "m.Q4.gguf"))
    assert gguf.gguf_file == "m.Q4.gguf" and gguf.id == str(tmp_path)
    assert weights_from_reference(str(tiny_mha)).id == str(tiny_mha)
    hub = weights_from_reference("meta-llama/Llama-2-7b-chat-hf@abc123")
    assert (hub.id, hub.revision, hub.gated) == ("meta-llama/Llama-2-7b-chat-hf", "abc123", True)
    with pytest.raises(ValueError, match="neither an existing path nor a Hub id"):
        weights_from_reference("not a model")


def test_adhoc_lineup_names_and_formats(tiny_mha):
    lineup = adhoc_lineup([str(tiny_mha), str(tiny_mha), "meta-llama/Llama-2-13b-chat-hf"])
    names = [c.name for c in lineup.contenders]
    assert names[1] == f"{names[0]} #2" and names[2] == "Llama-2-13b-chat-hf"
    assert [c.prompt_format for c in lineup.contenders] == ["chat_template", "chat_template", "llama2"]
    assert len(lineup.weights) == 2  # the same folder twice is loaded once


def test_adhoc_single_model_compares_its_presets(tiny_mha):
    lineup = adhoc_lineup([str(tiny_mha)])
    assert len(lineup.contenders) == 3 and len(lineup.weights) == 1


def test_lineup_and_params_validation():
    spec = get_lineup("demo").contenders[0]
    with pytest.raises(ValueError, match="duplicate contender names"):
        LineupSpec(name="x", contenders=(spec, spec))
    with pytest.raises(ValueError, match="2 to 8 contenders"):
        LineupSpec(name="x", contenders=(spec,))
    with pytest.raises(ValueError, match="temperature must be between 0 and 5"):
        GenerationParams(temperature=9)
    assert PRESETS["precise"].greedy and not PRESETS["balanced"].greedy
    assert PRESETS["balanced"].with_overrides(top_k=5, temperature=None).top_k == 5


def test_missing_local_weights_fail_before_loading(tmp_path):
    lineup = adhoc_lineup([str(tmp_path / "absent"), str(tmp_path / "also-absent.gguf")])
    with pytest.raises(WeightsNotFound) as error:
        load_lineup(lineup, log=lambda m: None)
    message = str(error.value)
    assert "absent has no config.json" in message and "also-absent.gguf does not exist" in message


def test_gated_hub_weights_say_how_to_get_them():
    # Offline (tests set HF_HUB_OFFLINE=1) and not cached: the message names the weights and the way in.
    with pytest.raises(WeightsNotFound) as error:
        check_available(get_lineup("llama2").contenders[0].weights, log=lambda m: None)
    message = str(error.value)
    assert "meta-llama/Llama-2-7b-chat-hf" in message
    assert "accept Meta's licence" in message and "HF_TOKEN" in message


def test_each_weights_loaded_once(tiny_mha, tiny_gqa):
    lineup = adhoc_lineup([str(tiny_mha), str(tiny_gqa), str(tiny_mha)])
    loaded = load_lineup(lineup, LoadOptions(dtype="float32", device_map="auto"), log=lambda m: None)
    assert len(loaded) == 2
    for weights, item in loaded.items():
        assert item.devices == ("cpu",) and str(item.input_device) == "cpu"
        assert item.model.config.num_key_value_heads == (4 if weights.id == str(tiny_mha) else 2)


def test_dtype_choice():
    import torch

    class Config:
        dtype = "float16"

    assert resolve_dtype("auto", Config(), on_gpu=True) == torch.float16
    assert resolve_dtype("auto", Config(), on_gpu=False) == torch.bfloat16
    assert resolve_dtype("float32", Config(), on_gpu=False) == torch.float32
    with pytest.raises(ValueError, match="dtype must be auto or one of"):
        resolve_dtype("int3", Config(), on_gpu=False)
