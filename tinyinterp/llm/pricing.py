"""Estimated USD prices per million tokens, for cost accounting (estimates, not invoices).

Prices change; override them with ``LLMConfig.prices`` or the ``--price-in/--price-out`` CLI
flags. A model missing from the table costs 0 and is logged once, so a run never stops over it.
The Batch API bills half the synchronous price (``BATCH_DISCOUNT``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

BATCH_DISCOUNT = 0.5


@dataclass(frozen=True)
class Price:
    """USD per 1M input (prompt) and output (completion) tokens."""

    input_per_m: float
    output_per_m: float


# Longest matching prefix wins, so dated snapshots ("gpt-4o-mini-2024-07-18") resolve too.
DEFAULT_PRICES: dict[str, Price] = {
    "gpt-3.5-turbo": Price(0.50, 1.50),
    "gpt-4": Price(30.0, 60.0),
    "gpt-4-turbo": Price(10.0, 30.0),
    "gpt-4o": Price(2.50, 10.0),
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "gpt-5": Price(1.25, 10.0),
    "gpt-5-mini": Price(0.25, 2.00),
    "gpt-5-nano": Price(0.05, 0.40),
}

_warned: set[str] = set()


def price_for(model: str, table: dict[str, Price] | None = None) -> Price | None:
    """The price entry whose name is the longest prefix of ``model`` (None if unknown)."""
    table = DEFAULT_PRICES if table is None else table
    matches = [name for name in table if model == name or model.startswith(name + "-")]
    if not matches:
        if model not in _warned:
            _warned.add(model)
            log.warning("no price known for model %r; its cost is counted as 0 (set prices to fix)", model)
        return None
    return table[max(matches, key=len)]


def estimate_cost(model: str, prompt_tokens: int, completion_tokens: int,
                  table: dict[str, Price] | None = None, batch: bool = False) -> float:
    """Estimated USD for one call's token usage."""
    price = price_for(model, table)
    if price is None:
        return 0.0
    cost = (prompt_tokens * price.input_per_m + completion_tokens * price.output_per_m) / 1e6
    return cost * (BATCH_DISCOUNT if batch else 1.0)
