"""Placement plans for the real Llama 2 configurations on hypothetical machines; no GPU, no network."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import LlamaConfig

from models.placement import (
    CUDA_CONTEXT_BYTES,
    ConfigNotFoundError,
    Gpu,
    LineupPlan,
    ModelPlan,
    ModelRequest,
    PlacementError,
    bitsandbytes_config,
    format_plan,
    load_config,
    model_requests,
    parse_gpus,
    plan_lineup,
    plan_to_dict,
    shipped_config,
    visible_gpus,
)
from models.placement.device_maps import device_of, split_layers
from models.placement.memory import (
    GiB,
    MiB,
    count_parameters,
    decoder_layers,
    format_gib,
    kv_cache_bytes,
    meta_model,
    weights_bytes,
)
from models.placement.search import cached_meta_model
from models.specs import ContenderSpec, LineupSpec, WeightsSpec

IDS = {size: f"meta-llama/Llama-2-{size}-chat-hf" for size in ("7b", "13b", "70b")}
S7, S13, S70 = "7b", "13b", "70b"
RAM = 256 * GiB  # every plan states its CPU RAM, so that no test depends on this machine's


@pytest.fixture(scope="module")
def configs() -> dict[str, LlamaConfig]:
    return {size: shipped_config(hub_id) for size, hub_id in IDS.items()}


@pytest.fixture(scope="module")
def llama2(configs) -> list[ModelRequest]:
    return [ModelRequest(size, configs[size], 4096) for size in (S7, S13, S70)]


@pytest.fixture(scope="module")
def plans(llama2) -> dict[str, LineupPlan]:
    """The llama2 lineup planned once per machine (meta models are cached, a plan takes well under 2 s)."""
    machines = ["8x80GiB", "4x80GiB", "2x80GiB", "1x80GiB", "8x24GiB", "4x24GiB", "2x80GiB,1x48GiB"]
    return {m: plan_lineup(llama2, parse_gpus(m), cpu_bytes=RAM) for m in machines}


# -- sizes on the meta device ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "parameters", "fp16_gib"), [(S7, 6.74e9, 12.6), (S13, 13.02e9, 24.2), (S70, 68.98e9, 128.5)]
)
def test_real_parameter_counts_on_the_meta_device(configs, size, parameters, fp16_gib):
    model = cached_meta_model(configs[size])
    assert next(model.parameters()).device.type == "meta"
    assert count_parameters(model) == pytest.approx(parameters, rel=0.005)
    assert format_gib(weights_bytes(model, "float16")) == str(fp16_gib)


def test_quantized_weights_keep_embeddings_and_lm_head_in_16_bit(configs):
    model = cached_meta_model(configs[S7])
    embeddings = 2 * 32000 * 4096 * 2  # embed_tokens and lm_head, float16
    norms = (2 * 32 + 1) * 4096 * 2
    linears = count_parameters(model) - 2 * 32000 * 4096 - (2 * 32 + 1) * 4096
    rows = 32 * (4 * 4096 + 2 * 11008 + 4096)  # output features of the quantized linears
    assert weights_bytes(model, "float16", "int8") == linears + 4 * rows + embeddings + norms
    assert weights_bytes(model, "float16", "int4") == linears // 2 + 4 * linears // 64 + embeddings + norms


def test_shipped_configs_are_the_published_llama2_configs(configs):
    shapes = {S7: (4096, 32, 32, 32, 11008), S13: (5120, 40, 40, 40, 13824), S70: (8192, 80, 64, 8, 28672)}
    for size, (hidden, layers, heads, kv_heads, intermediate) in shapes.items():
        c = configs[size]
        assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads) == (hidden, layers, heads)
        assert (c.num_key_value_heads, c.intermediate_size) == (kv_heads, intermediate)
        assert (c.vocab_size, c.max_position_embeddings, c.rms_norm_eps) == (32000, 4096, 1e-5)
        assert c.dtype == torch.float16 and not c.tie_word_embeddings


def test_kv_cache_of_7b_at_4096_tokens_by_hand(configs):
    # 2 (keys, values) x 32 layers x 32 kv heads x 128 head dim x 2 bytes x 4096 tokens x batch 1
    assert kv_cache_bytes(configs[S7], 4096, 1, 2) == 2 * 32 * 32 * 128 * 2 * 4096 == 2 * GiB
    assert kv_cache_bytes(configs[S7], 4096, 3, 2) == 6 * GiB
    assert kv_cache_bytes(configs[S7], 1024, 1, 4) == 1 * GiB


def test_grouped_query_attention_makes_the_70b_cache_8x_smaller(configs):
    gqa = configs[S70]
    mha = LlamaConfig(**{**gqa.to_dict(), "num_key_value_heads": gqa.num_attention_heads})
    assert kv_cache_bytes(mha, 4096, 1, 2) == 8 * kv_cache_bytes(gqa, 4096, 1, 2)
    assert kv_cache_bytes(gqa, 4096, 1, 2) == 2 * 80 * 8 * 128 * 2 * 4096  # 1.25 GiB


# -- machines -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "sizes_gib"),
    [
        ("4x80GiB", [80] * 4),
        ("8x24GiB", [24] * 8),
        ("2x80GiB,1x48GiB", [80, 80, 48]),
        ("80GB", [80]),  # GPU makers' GB are GiB: an "80GB" A100 has 81,920 MiB
        ("1x40000MiB", [40000 / 1024]),
        (" 2 x 24gib , 1x1.5TiB ", [24, 24, 1536]),
    ],
)
def test_parse_gpus(text, sizes_gib):
    gpus = parse_gpus(text)
    assert [g.index for g in gpus] == list(range(len(sizes_gib)))
    assert [g.total_bytes for g in gpus] == [int(s * GiB) for s in sizes_gib]


@pytest.mark.parametrize("text", ["", "4x", "80", "x80GiB", "4x80 parsecs", "0x80GiB", "4x80GiB;2x24GiB", "4x1GiB"])
def test_parse_gpus_refuses_bad_text_with_an_example(text):
    with pytest.raises(ValueError, match="e.g. 4x80GiB"):
        parse_gpus(text)


def test_visible_gpus_is_empty_without_cuda():
    if torch.cuda.is_available():
        assert all(g.total_bytes > 0 for g in visible_gpus())
    else:
        assert visible_gpus() == ()


# -- what every plan must satisfy ------------------------------------------------------------------------


def expected_bytes(plan: ModelPlan, config: LlamaConfig, batch_size: int) -> dict[object, int]:
    """Recount a GPU-only plan from the device map, independently of the planner's arithmetic."""
    model = cached_meta_model(config)
    lm_head = model.get_output_embeddings()
    quantized = {
        f"{name}.weight": module
        for name, module in model.named_modules()
        if plan.quantization and isinstance(module, torch.nn.Linear) and module is not lm_head
    }
    used: dict[object, int] = {}
    for name, param in model.named_parameters():
        n = param.numel()
        if name in quantized and plan.quantization == "int8":
            size = n + 4 * quantized[name].out_features
        elif name in quantized:
            size = n // 2 + 4 * math.ceil(n / 64)
        else:
            size = 2 * n
        device = device_of(name, plan.device_map)
        used[device] = used.get(device, 0) + size
    head_dim = config.hidden_size // config.num_attention_heads
    kv_per_layer = 2 * config.num_key_value_heads * head_dim * 2 * plan.context_length * batch_size
    for i in range(config.num_hidden_layers):
        device = device_of(f"model.layers.{i}", plan.device_map)
        used[device] += kv_per_layer
    return {d: b + (plan.reserve_bytes if d in plan.gpus else 0) for d, b in used.items()}


def check_plan(plan: LineupPlan, configs: dict[str, LlamaConfig]) -> None:
    """No layer split, every weight mapped, no device over budget, GPU-only sizes recounted exactly."""
    for model_plan in plan.models:
        config = configs[model_plan.name]
        model = cached_meta_model(config)
        layers = list(decoder_layers(model))
        assert len(layers) == config.num_hidden_layers
        assert split_layers(model_plan.device_map, layers) == []
        assert not any(key.startswith(tuple(f"{layer}." for layer in layers)) for key in model_plan.device_map)
        for name, _ in model.named_parameters():
            device_of(name, model_plan.device_map)  # raises if the map misses a weight
        assert sum(model_plan.layers_per_device.values()) == config.num_hidden_layers
        if not model_plan.offloaded_bytes and model_plan.gpus:
            recount = expected_bytes(model_plan, config, plan.batch_size)
            assert recount.keys() == model_plan.used_bytes.keys()
            for device, size in recount.items():
                assert abs(model_plan.used_bytes[device] - size) <= 64 * 1024  # rotary buffers only
    used = plan.used_bytes()
    for gpu in plan.gpus:
        assert used.get(gpu.index, 0) <= gpu.total_bytes, f"GPU {gpu.index} over budget"
    assert used.get("cpu", 0) <= plan.cpu_bytes


def test_the_split_check_finds_a_split_layer():
    layers = ["model.layers.0", "model.layers.1"]
    assert split_layers({"model": 0}, layers) == []
    assert split_layers({"model.layers.0": 0, "model.layers.1": 1, "model.layers.10.mlp": 1}, layers) == []
    assert split_layers({"model.layers.0": 0, "model.layers.1.mlp": 1, "model.layers.1.self_attn": 0}, layers) == [
        "model.layers.1"
    ]
    assert split_layers({"model": 0, "model.layers.1.mlp": 1}, layers) == ["model.layers.1"]


def placement(plan: LineupPlan) -> dict[str, tuple[str, tuple[int, ...]]]:
    return {m.name: (m.precision, m.gpus) for m in plan.models}


def test_4x80_every_model_on_its_own_whole_gpus_in_float16(plans, configs):
    plan = plans["4x80GiB"]
    check_plan(plan, configs)
    assert placement(plan) == {S7: ("float16", (3,)), S13: ("float16", (2,)), S70: ("float16", (0, 1))}
    assert plan.model(S70).layers_per_device == {0: 40, 1: 40}  # balanced across its two cards
    assert plan.model(S70).device_map["model.embed_tokens"] == 0 and plan.model(S70).device_map["lm_head"] == 1
    assert plan.warnings == () and plan.notes == ()
    assert all(m.shares_gpus_with == () and bitsandbytes_config(m) is None for m in plan.models)


def test_8x80_leaves_the_spare_gpus_unused_and_says_so(plans, configs):
    plan = plans["8x80GiB"]
    check_plan(plan, configs)
    assert placement(plan) == placement(plans["4x80GiB"])
    assert plan.warnings == ()
    assert plan.notes == ("GPUs 4, 5, 6, 7 left unused: the lineup fits without them",)


def test_2x80_quantizes_only_the_70b_to_8_bit(plans, configs):
    # In float16 the 70B alone takes both cards (130.7 GiB with its cache), leaving 26 GiB for 7B + 13B
    # (42.7 GiB). One model in 8-bit is the least degradation: the 70B on GPU 0, 7B and 13B sharing GPU 1.
    plan = plans["2x80GiB"]
    check_plan(plan, configs)
    assert placement(plan) == {S7: ("float16", (1,)), S13: ("float16", (1,)), S70: ("int8", (0,))}
    assert bitsandbytes_config(plan.model(S70)) == {"load_in_8bit": True}
    assert plan.model(S7).shares_gpus_with == (S13,)
    (int8,) = plan.model(S70).warnings
    assert "70b: 8-bit" in int8 and "173.4 GiB" in int8 and "158.0 GiB usable" in int8 and "slower" in int8
    assert any("share GPU 1" in w for w in plan.model(S13).warnings)
    assert len(plan.warnings) == 2


def test_1x80_quantizes_the_70b_to_4_bit_and_the_13b_to_8_bit(plans, configs):
    # 8-bit everywhere needs 92.5 GiB > 79 GiB usable, so 4-bit is needed; 4-bit for the 70B alone leaves
    # too little for 7B + 13B in float16 (80.8 GiB), so the 13B also goes to 8-bit; the 7B stays float16.
    plan = plans["1x80GiB"]
    check_plan(plan, configs)
    assert placement(plan) == {S7: ("float16", (0,)), S13: ("int8", (0,)), S70: ("int4", (0,))}
    assert bitsandbytes_config(plan.model(S70)) == {
        "load_in_4bit": True,
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_compute_dtype": "float16",
        "bnb_4bit_use_double_quant": False,
    }
    assert plan.model(S7).warnings == (next(w for w in plan.warnings if "share GPU 0" in w),)
    assert "4-bit NF4" in plan.model(S70).warnings[0] and "or with 8-bit only" in plan.model(S70).warnings[0]
    assert not any(m.offloaded_bytes for m in plan.models)


def test_8x24_puts_the_70b_in_8_bit_on_four_gpus(plans, configs):
    # The total fits in float16 (173.4 of 184 GiB) but not as whole layers: a 24 GiB card holds at most 13
    # of the 70B's 1.6 GiB layers, so the 70B needs 7 cards and the 13B (27.3 GiB with cache) and the 7B
    # cannot share the last one. With the 70B in 8-bit every model gets GPUs of its own and one is spare.
    plan = plans["8x24GiB"]
    check_plan(plan, configs)
    assert placement(plan) == {S7: ("float16", (6,)), S13: ("float16", (4, 5)), S70: ("int8", (0, 1, 2, 3))}
    assert plan.model(S13).layers_per_device == {4: 20, 5: 20}
    assert [w for w in plan.warnings] == list(plan.model(S70).warnings)
    assert "not as whole decoder layers per GPU" in plan.warnings[0]
    assert plan.notes == ("GPU 7 left unused: the lineup fits without it",)


def test_4x24_puts_the_70b_in_4_bit_and_shares_a_gpu_in_float16(plans, configs):
    # 92 GiB usable; even all-8-bit needs 92.5 GiB, so the 70B goes to 4-bit on two cards. The 13B in float16
    # needs two cards, which leaves none of its own for the 7B: it shares GPU 3 with the 13B's last layers,
    # which keeps both in float16 (sharing costs speed when both answer at once, not quality).
    plan = plans["4x24GiB"]
    check_plan(plan, configs)
    assert placement(plan) == {S7: ("float16", (3,)), S13: ("float16", (2, 3)), S70: ("int4", (0, 1))}
    assert plan.model(S13).layers_per_device == {2: 32, 3: 8}
    assert plan.model(S7).shares_gpus_with == (S13,) and plan.model(S70).shares_gpus_with == ()
    assert len(plan.warnings) == 2 and "4-bit" in plan.warnings[1]


def test_mixed_gpus_keep_everything_float16_by_sharing_the_48_gib_card(plans, configs):
    plan = plans["2x80GiB,1x48GiB"]
    check_plan(plan, configs)
    assert placement(plan) == {S7: ("float16", (2,)), S13: ("float16", (2,)), S70: ("float16", (0, 1))}
    assert plan.model(S70).layers_per_device == {0: 40, 1: 40}
    (shared,) = plan.warnings
    assert shared.startswith("7b (float16) and 13b (float16) share GPU 2")


def test_without_quantization_the_70b_is_offloaded_to_cpu_ram(configs):
    plan = plan_lineup([(S70, configs[S70], 4096)], parse_gpus("1x80GiB"), cpu_bytes=RAM, allow_quantization=False)
    check_plan(plan, configs)
    model = plan.model(S70)
    assert model.quantization is None and model.gpus == (0,)
    assert set(model.layers_per_device) == {0, "cpu"} and model.layers_per_device[0] > 40
    assert 50 * GiB < model.offloaded_bytes["cpu"] < 80 * GiB and "disk" not in model.used_bytes
    (warning,) = plan.warnings
    assert "CPU RAM" in warning and "in 16-bit (quantization off)" in warning and "10-100x slower" in warning


def test_offload_goes_to_disk_when_ram_runs_out(llama2, configs):
    plan = plan_lineup(llama2, parse_gpus("1x24GiB"), cpu_bytes=64 * GiB)
    check_plan(plan, configs)
    assert placement(plan) == {S7: ("int8", (0,)), S13: ("int4", (0,)), S70: ("bfloat16", ())}
    assert set(plan.model(S70).layers_per_device) == {"cpu", "disk"}
    assert "runs on the CPU" in plan.model(S70).warnings[0] and "on disk" in plan.model(S70).warnings[0]


def test_a_lineup_that_cannot_fit_is_refused_with_the_numbers(llama2):
    with pytest.raises(PlacementError) as refused:
        plan_lineup(llama2, parse_gpus("1x24GiB"), cpu_bytes=RAM, allow_offload=False)
    message = str(refused.value)
    assert "needs at least 56.8 GiB" in message and "23.0 GiB are available" in message and "offload off" in message
    assert refused.value.needed_bytes > refused.value.available_bytes
    with pytest.raises(PlacementError, match=r"148\.0 GiB, offloading 70b in 16-bit .* 65\.0 GiB are available"):
        plan_lineup(llama2, parse_gpus("1x24GiB"), cpu_bytes=32 * GiB, disk_bytes=10 * GiB)


# -- no GPU -----------------------------------------------------------------------------------------------


def tiny(**overrides) -> LlamaConfig:
    settings = dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=1000,
        max_position_embeddings=256,
    )
    return LlamaConfig(**{**settings, **overrides})


def test_tiny_models_are_planned_on_the_cpu_without_a_gpu():
    configs = {"gqa": tiny(), "mha": tiny(num_key_value_heads=4, tie_word_embeddings=True)}
    plan = plan_lineup([(name, c, 256) for name, c in configs.items()], [], cpu_bytes=1 * GiB)
    check_plan(plan, configs)
    for model in plan.models:
        assert model.device_map == {"": "cpu"} and model.gpus == () and model.dtype == "bfloat16"
        assert model.layers_per_device == {"cpu": 4} and bitsandbytes_config(model) is None
    assert plan.warnings == ("no GPU: every model runs on the CPU in bfloat16, roughly 10-100x slower than on a GPU",)


def test_without_enough_ram_a_cpu_plan_spills_to_disk_or_is_refused():
    config = tiny(num_hidden_layers=8, hidden_size=256, intermediate_size=512)
    ram = weights_bytes(meta_model(config), "bfloat16") * 3 // 4
    plan = plan_lineup([("tiny", config, 256)], [], cpu_bytes=ram)
    (model,) = plan.models
    assert set(model.layers_per_device) == {"cpu", "disk"} and "on disk" in model.warnings[0]
    assert plan.used_bytes()["cpu"] <= ram  # the KV cache stays in RAM even for layers on disk
    with pytest.raises(PlacementError, match="offload off"):
        plan_lineup([("tiny", config, 256)], [], cpu_bytes=ram, allow_offload=False)


def test_a_planned_disk_offload_loads_and_answers_like_a_plain_load(tmp_path):
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    config = tiny(num_hidden_layers=8, hidden_size=256, intermediate_size=512)
    torch.manual_seed(0)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(tmp_path / "tiny")
    ram = weights_bytes(meta_model(config), "bfloat16") * 3 // 4
    (model_plan,) = plan_lineup([("tiny", config, 256)], [], cpu_bytes=ram).models
    assert set(model_plan.device_map.values()) == {"cpu", "disk"}
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "tiny", dtype=torch.bfloat16)
    planned = AutoModelForCausalLM.from_pretrained(
        tmp_path / "tiny", dtype=torch.bfloat16, device_map=model_plan.device_map, offload_folder=tmp_path / "offload"
    )
    prompt = torch.tensor([[1, 5, 9, 42]])
    expected = plain.generate(prompt, max_new_tokens=6, do_sample=False)
    assert torch.equal(planned.generate(prompt, max_new_tokens=6, do_sample=False), expected)


# -- reports ----------------------------------------------------------------------------------------------


def test_format_plan_is_a_table_with_warnings_below(plans):
    text = format_plan(plans["2x80GiB"])
    header = text.splitlines()[1]
    for column in (
        "model",
        "dtype/quant",
        "weights GiB",
        "KV-cache GiB",
        "GPUs",
        "decoder layers per device",
        "spare GiB",
    ):
        assert column in header
    rows = text.splitlines()[2:5]
    assert [row.split()[:2] for row in rows] == [[S7, "float16"], [S13, "float16"], [S70, "int8"]]
    assert rows[2].split()[2:6] == ["64.8", "1.2", "0", "0:80"]
    assert "Warnings:" in text and "8-bit (bitsandbytes LLM.int8)" in text


def test_plan_to_dict_is_json(plans):
    data = json.loads(json.dumps(plan_to_dict(plans["8x24GiB"])))
    assert data["machine"] == "8x24GiB" and data["cuda_context_bytes"] == CUDA_CONTEXT_BYTES
    seventy = data["models"][2]
    assert seventy["name"] == S70 and seventy["precision"] == "int8" and seventy["gpus"] == [0, 1, 2, 3]
    assert seventy["bitsandbytes"] == {"load_in_8bit": True}
    assert set(seventy["device_map"].values()) == {0, 1, 2, 3}
    assert sum(seventy["layers_per_device"].values()) == 80
    assert data["notes"] and len(data["warnings"]) == 1


# -- configurations without the network --------------------------------------------------------------------


def test_load_config_uses_shipped_llama2_configs_without_the_network(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    config = load_config(WeightsSpec(IDS[S70], revision="main"))
    assert (config.num_hidden_layers, config.num_key_value_heads) == (80, 8)


def test_load_config_reads_a_local_folder(tmp_path):
    tiny(num_hidden_layers=3).save_pretrained(tmp_path)
    assert load_config(WeightsSpec(str(tmp_path))).num_hidden_layers == 3


def test_load_config_says_what_to_do_when_nothing_is_found(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    weights = WeightsSpec("someone/not-here", revision="v1", how_to_get="huggingface-cli download someone/not-here")
    with pytest.raises(ConfigNotFoundError, match="someone/not-here@v1.*huggingface-cli download"):
        load_config(weights)
    with pytest.raises(ConfigNotFoundError, match="has no config.json"):
        load_config(WeightsSpec(str(tmp_path)))


def test_model_requests_for_a_lineup_plan_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    contenders = tuple(ContenderSpec(size, WeightsSpec(hub_id, revision="main")) for size, hub_id in IDS.items())
    requests = model_requests(LineupSpec("llama2", contenders))
    assert [r.name for r in requests] == list(IDS.values())
    assert [r.config.num_hidden_layers for r in requests] == [32, 40, 80]
    assert all(r.context_length == 4096 for r in requests)
    plan = plan_lineup(requests, parse_gpus("4x80GiB"), cpu_bytes=RAM)
    assert plan.model(IDS[S70]).gpus == (0, 1)


def test_bad_requests_are_refused(configs):
    with pytest.raises(ValueError, match="distinct names"):
        plan_lineup([("a", configs[S7], 4096), ("a", configs[S7], 4096)], [Gpu(0, 80 * GiB)], cpu_bytes=RAM)
    with pytest.raises(ValueError, match="batch_size"):
        plan_lineup([("a", configs[S7], 4096)], [Gpu(0, 80 * GiB)], cpu_bytes=RAM, batch_size=0)


def test_batch_and_context_grow_the_reserved_cache(configs):
    small = plan_lineup([(S7, configs[S7], 1024)], [Gpu(0, 24 * GiB)], cpu_bytes=RAM).model(S7)
    large = plan_lineup([(S7, configs[S7], 4096)], [Gpu(0, 24 * GiB)], cpu_bytes=RAM, batch_size=2).model(S7)
    assert large.kv_cache_bytes == 8 * small.kv_cache_bytes == 4 * GiB
    assert large.spare_bytes[0] < small.spare_bytes[0] - 3.5 * GiB
    assert small.used_bytes[0] < 16 * GiB and MiB < small.reserve_bytes < large.reserve_bytes
