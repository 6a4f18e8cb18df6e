"""Engines: the seam between a stream and the model that decodes it (`Engine`), the two engines
(transformers' continuous batching, our own batched loop), which one each loaded weights gets
(`build_engines`), and token sampling."""

from models.engines.batched_loop import BatchedLoop
from models.engines.choice import CachePlan, build_engines, describe_engine, plan_cache
from models.engines.continuous import ContinuousEngine
from models.engines.probe import step_gaps
from models.engines.protocol import Engine, EngineEvent, Finished, StreamRequest, close_at_exit, failure_message
from models.engines.sampling import TokenSampler, logits_processors

__all__ = [
    "BatchedLoop",
    "CachePlan",
    "ContinuousEngine",
    "Engine",
    "EngineEvent",
    "Finished",
    "StreamRequest",
    "TokenSampler",
    "build_engines",
    "close_at_exit",
    "describe_engine",
    "failure_message",
    "logits_processors",
    "plan_cache",
    "step_gaps",
]
