"""Placement: which GPUs each model of a lineup gets, in which precision, with which device map, planned
before anything loads (`plan_lineup`), with the model configurations and the memory arithmetic it needs."""

from models.placement.configs import ConfigNotFoundError, load_config, shipped_config
from models.placement.lineup import model_requests, parse_gpus, plan_lineup, visible_gpus
from models.placement.memory import parse_size
from models.placement.plans import (
    CUDA_CONTEXT_BYTES,
    Gpu,
    LineupPlan,
    ModelPlan,
    ModelRequest,
    PlacementError,
    bitsandbytes_config,
    describe_gpus,
    format_plan,
    plan_to_dict,
)

__all__ = [
    "CUDA_CONTEXT_BYTES",
    "ConfigNotFoundError",
    "Gpu",
    "LineupPlan",
    "ModelPlan",
    "ModelRequest",
    "PlacementError",
    "bitsandbytes_config",
    "describe_gpus",
    "format_plan",
    "load_config",
    "model_requests",
    "parse_gpus",
    "parse_size",
    "plan_lineup",
    "plan_to_dict",
    "shipped_config",
    "visible_gpus",
]
