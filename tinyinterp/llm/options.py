"""The LLM command-line options, one vocabulary for ``datagen``, ``eval grade|probes`` and ``explain``.

    add_llm_arguments(parser)          # --base-url --model --api-key-env --concurrency --timeout ...
    client = client_from_args(args)    # an LLMClient configured from them

The API key is read from the environment only (``$OPENAI_API_KEY``, or the variable named by
``--api-key-env``), so it never appears in shell history, process lists or saved files. Old names
(``--grader-model``, ``--max-concurrency``) still work and print one deprecation line on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys

from tinyinterp.llm.client import DEFAULT_MODEL, ENV_API_KEY, ENV_BASE_URL, ENV_MODEL, LLMClient, LLMConfig
from tinyinterp.llm.pricing import Price

DEPRECATED_ALIASES = {"--grader-model": "--model", "--max-concurrency": "--concurrency"}
"""Old option name → the name it is an alias of."""


class _DeprecatedAlias(argparse.Action):
    """Stores into the new option's ``dest`` and says once, on stderr, which name to use instead."""

    def __init__(self, option_strings, dest, new_name: str, **kwargs):
        self.new_name = new_name
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"warning: {option_string} is deprecated; use {self.new_name}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_llm_arguments(parser: argparse.ArgumentParser, concurrency: int = 8) -> argparse._ArgumentGroup:
    """Add the "LLM server" option group to ``parser``; returns the group."""
    g = parser.add_argument_group("LLM server")
    g.add_argument("--base-url", default=None, help=f"OpenAI-compatible server root ending in /v1 (default ${ENV_BASE_URL}, "
                                                    "else the OpenAI API)")
    g.add_argument("--model", default=None, help=f"model name (default ${ENV_MODEL}, else {DEFAULT_MODEL})")
    g.add_argument("--api-key-env", default=ENV_API_KEY, help="name of the environment variable holding the API key "
                                                              "(the key itself is never taken on the command line)")
    g.add_argument("--concurrency", type=int, default=concurrency,
                   help=f"requests in flight at once (default {concurrency})")
    g.add_argument("--timeout", type=float, default=60.0, help="seconds per request attempt before retrying (default 60)")
    g.add_argument("--max-retries", type=int, default=6, help="retries per request on 429/5xx/timeouts/drops (default 6)")
    g.add_argument("--backoff-base", type=float, default=1.0, help="first retry delay in seconds; doubles each retry (default 1)")
    g.add_argument("--price-in", type=float, default=None, help="USD per 1M prompt tokens for cost estimates (default: built-in table)")
    g.add_argument("--price-out", type=float, default=None, help="USD per 1M completion tokens for cost estimates")
    types = {"--model": None, "--concurrency": int}
    for old, new in DEPRECATED_ALIASES.items():
        g.add_argument(old, dest=new.lstrip("-").replace("-", "_"), type=types[new], action=_DeprecatedAlias,
                       new_name=new, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return g


def model_from_args(args: argparse.Namespace) -> str:
    """The model the client will call: ``--model``, else ``$TINYINTERP_LLM_MODEL``, else the default."""
    return args.model or os.environ.get(ENV_MODEL) or DEFAULT_MODEL


def prices_from_args(args: argparse.Namespace) -> dict[str, Price] | None:
    """``--price-in/--price-out`` as a price table for the chosen model; ``None`` = the built-in table."""
    if args.price_in is None and args.price_out is None:
        return None
    return {model_from_args(args): Price(args.price_in or 0.0, args.price_out or 0.0)}


def config_from_args(args: argparse.Namespace) -> LLMConfig:
    return LLMConfig(base_url=args.base_url, model=args.model, api_key=os.environ.get(args.api_key_env),
                     max_concurrency=args.concurrency, timeout_s=args.timeout, max_retries=args.max_retries,
                     backoff_base_s=args.backoff_base, prices=prices_from_args(args))


def client_from_args(args: argparse.Namespace) -> LLMClient:
    """An :class:`LLMClient` for the options :func:`add_llm_arguments` added."""
    return LLMClient(config_from_args(args))
