"""Picking the next token of one stream: the same code whether the stream decodes alone or in a batch.

Each stream owns its processors, its seeded generator and its token history, so a stream's tokens do
not depend on what else shares the batch: greedy streams equal `generate`, and a sampled stream run
again alone with the stored seed draws the same tokens (given the same logits).
"""

from __future__ import annotations

from typing import Sequence

import torch
from transformers import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from models.specs import GenerationParams


def logits_processors(params: GenerationParams) -> LogitsProcessorList:
    """The processors `generate` would apply for these settings, in its order."""
    processors = LogitsProcessorList()
    if params.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(params.repetition_penalty))
    if not params.greedy:
        processors.append(TemperatureLogitsWarper(params.temperature))
        if params.top_k > 0:
            processors.append(TopKLogitsWarper(params.top_k))
        if params.top_p < 1.0:
            processors.append(TopPLogitsWarper(params.top_p))
    return processors


class TokenSampler:
    """One stream's next-token choice: processors over prompt + answer so far, then argmax or a draw."""

    def __init__(
        self, prompt_ids: Sequence[int], params: GenerationParams, seed: int, device: torch.device | str = "cpu"
    ) -> None:
        self.params, self.device = params, torch.device(device)
        self.processors = logits_processors(params)
        # Repetition penalty sees the whole prompt and answer, as in `generate`.
        self.ids = torch.tensor([list(prompt_ids)], device=self.device)  # (1, tokens so far)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)

    def __call__(self, logits: torch.Tensor) -> int:
        """`logits`: (vocab,) for this stream's last position; returns the chosen token id."""
        scores = self.processors(self.ids, logits.float().to(self.device)[None, :])  # (1, vocab)
        if self.params.greedy:
            next_id = scores.argmax(dim=-1, keepdim=True)
        else:
            next_id = torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=self.generator)
        self.ids = torch.cat([self.ids, next_id], dim=-1)
        return int(next_id)
