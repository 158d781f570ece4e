"""Sub-commands of the ``tinyinterp`` command line, found through entry points so the library names no program.

A package adds a sub-command by declaring a :class:`Command` in a module that imports nothing heavy,
and naming it in its ``pyproject.toml``::

    [project.entry-points."tinyinterp.commands"]
    train = "training.cli:COMMAND"

This is how pytest plugins and flask commands are found. A :class:`Command` carries the one-line help
``tinyinterp --help`` shows and where its parser lives (``register``, ``"module:function"``), which is
imported only when that command runs or is asked for ``--help``: listing the commands never imports
torch. The library's own commands are declared below and are offered even when the installed metadata
is older than the checkout.
"""

from __future__ import annotations

import argparse
import importlib
import logging
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Callable

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "tinyinterp.commands"


@dataclass(frozen=True)
class Command:
    name: str
    """The sub-command word (``tinyinterp NAME ...``)."""
    help: str
    """One line for ``tinyinterp --help``."""
    register: str
    """``"module:function"``; ``function(subparsers)`` adds the full sub-parser named :attr:`name`."""

    def add_full_parser(self, subparsers) -> None:
        module, _, function = self.register.partition(":")
        add: Callable = getattr(importlib.import_module(module), function)
        add(subparsers)

    def add_stub_parser(self, subparsers) -> None:
        """A parser with the help line only: enough for the command list, costs no import."""
        subparsers.add_parser(self.name, help=self.help, add_help=False)


GENERATE = Command("generate", "sample stories from a model", "tinyinterp.cli:add_generate_subparser")
INFO = Command("info", "summarise a preset, run directory or model", "tinyinterp.cli:add_info_subparser")
ANALYZE = Command("analyze", "neuron index, head classes, model comparison", "tinyinterp.interp.cli:add_subparser")
EVAL = Command("eval", "completions, LLM grades, ROUGE memorization, probes", "tinyinterp.evaluation.cli:add_subparser")
EXPORT = Command("export", "write a run as a Hugging Face model folder", "tinyinterp.hf.export:add_subparser")
EXPLAIN = Command("explain", "explain neurons in words and score the explanations by simulation",
                  "tinyinterp.explain.cli:add_subparser")
EXPLAIN_COMPARE = Command("explain-compare", "explanation scores per layer (relative depth), two models side by side",
                          "tinyinterp.explain.compare:add_subparser")
SAE = Command("sae", "sparse dictionaries (TopK SAEs, transcoders): train, cache activations, evaluate",
              "tinyinterp.dictionaries.cli:add_subparser")
ATTRIBUTE = Command("attribute", "attribution graph of a prompt's next token through transcoder features",
                    "tinyinterp.attribution.cli:add_subparser")
LIBRARY_COMMANDS = (GENERATE, INFO, ANALYZE, EVAL, EXPORT, EXPLAIN, EXPLAIN_COMPARE, SAE, ATTRIBUTE)


def discover() -> list[Command]:
    """Every registered command (entry points, plus library commands the installed metadata lacks), by name."""
    found: dict[str, Command] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in found:
            continue  # the same checkout installed twice (editable + path): first one wins
        try:
            command = ep.load()
        except ImportError as e:  # a package uninstalled under its metadata: skip it, say why
            log.warning("tinyinterp command %r (%s) cannot be loaded: %s", ep.name, ep.value, e)
            continue
        if not isinstance(command, Command) or command.name != ep.name:
            log.warning("entry point %r (%s) is not a tinyinterp.cli.commands.Command named %r", ep.name, ep.value, ep.name)
            continue
        found[ep.name] = command
    for command in LIBRARY_COMMANDS:
        found.setdefault(command.name, command)
    return [found[name] for name in sorted(found)]


def add_commands(subparsers: argparse._SubParsersAction, full: Callable[[Command], bool]) -> list[Command]:
    """Add every command to ``subparsers``: a full parser where ``full(command)``, else a help-line stub."""
    commands = discover()
    for command in commands:
        (command.add_full_parser if full(command) else command.add_stub_parser)(subparsers)
    return commands
