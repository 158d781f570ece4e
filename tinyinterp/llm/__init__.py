"""OpenAI-compatible LLM client shared by datagen and evaluation (retries, concurrency, cost).

Public API::

    from tinyinterp.llm import LLMClient, LLMConfig, LLMStats, ChatResult, LLMError, InvalidReply
    from tinyinterp.llm import extract_json, estimate_cost, Price, DEFAULT_PRICES
"""

from tinyinterp.llm.client import (
    DEFAULT_MODEL, ENV_API_KEY, ENV_BASE_URL, ENV_MODEL, ChatResult, LLMClient, LLMConfig, LLMError, LLMStats,
)
from tinyinterp.llm.pricing import BATCH_DISCOUNT, DEFAULT_PRICES, Price, estimate_cost, price_for
from tinyinterp.llm.structured import InvalidReply, extract_json, json_instruction

__all__ = [
    "BATCH_DISCOUNT", "DEFAULT_MODEL", "DEFAULT_PRICES", "ENV_API_KEY", "ENV_BASE_URL", "ENV_MODEL",
    "ChatResult", "InvalidReply", "LLMClient", "LLMConfig", "LLMError", "LLMStats", "Price",
    "estimate_cost", "extract_json", "json_instruction", "price_for",
]
