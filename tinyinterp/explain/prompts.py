"""Prompt builders and reply parsers for explaining and simulating a neuron (our own text, the paper's format).

Explain prompt (Bills et al. 2023): a system message, two few-shot neurons, then the neuron at hand;
each neuron's records are ``token<TAB>activation`` lines (activations 0–10) between ``<start>`` and
``<end>``, followed, when few tokens are active, by the same records with zeros filtered out, and
ends with ``Explanation of neuron N behavior: the main thing this neuron does is find``.

Simulate prompts: given only the explanation, predict 0–10 per token. ``simulate_messages`` asks the
model to copy every token and write its activation after a TAB (the logprobs of the token after each
TAB give the expected value); ``simulate_json_messages`` asks for ``{"activations": [...]}``.
Token strings are made printable (``\\n`` → ``↵``, ``\\t`` → ``⇥``) so they cannot break the line format.
All functions are pure and tested against exact strings.
"""

from __future__ import annotations

import json
import re

from tinyinterp.explain.records import MAX_NORMALIZED, normalize
from tinyinterp.llm import InvalidReply

EXPLANATION_PREFIX = "the main thing this neuron does is find"
UNKNOWN = "unknown"

EXPLAIN_SYSTEM = (
    "We're studying neurons in a neural network. Each neuron looks for some particular thing in a short document. "
    "Look at the parts of the document the neuron activates for and summarize in a single sentence what the neuron "
    "is looking for. Don't list examples of words.\n\nThe activation format is token<tab>activation. Activation "
    "values range from 0 to 10. A neuron finding what it's looking for is represented by a non-zero activation "
    "value. The higher the activation value, the stronger the match."
)
SIMULATE_SYSTEM = (
    "We're studying neurons in a neural network. Each neuron looks for some particular thing in a short document. "
    "Look at an explanation of what the neuron does, and try to predict how it will fire on each token.\n\n"
    "The activation format is token<tab>activation, activations go from 0 to 10, \"unknown\" indicates an unknown "
    "activation. Most activations will be 0. Reply with every token of the document on its own line, in order, "
    "as token<tab>activation, between <start> and <end>."
)
SIMULATE_JSON_SYSTEM = (
    "We're studying neurons in a neural network. Each neuron looks for some particular thing in a short document. "
    "Look at an explanation of what the neuron does, and predict its activation on each token, an integer from 0 "
    "to 10 (most activations are 0). Reply with only a JSON object {\"activations\": [...]} holding exactly one "
    "integer per token, in the order of the tokens."
)

# Few-shot neurons of a TinyStories model (hand-written; tokens as the GPT-Neo BPE splits them).
FEW_SHOT = [
    {
        "records": [
            (["One", " day", ",", " Lily", " went", " to", " the", " park", " with", " her", " mom", "."],
             [0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 1, 0]),
            ([" Tom", " and", " Sue", " liked", " to", " play", " ball", "."],
             [8, 0, 9, 0, 0, 0, 0, 0]),
        ],
        "explanation": "names of the children in the story",
    },
    {
        "records": [
            ([" The", " sun", " was", " hot", ",", " so", " they", " sat", " in", " the", " shade", "."],
             [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]),
            (["\"", "Thank", " you", "!\"", " said", " Ben", "."],
             [0, 0, 0, 7, 0, 0, 10]),
        ],
        "explanation": "the punctuation that ends a sentence",
    },
]

_REFUSAL = re.compile(r"^\s*(i'?m sorry|i am sorry|sorry,|i can(no|')t|i am unable|i'm unable|as an ai|unfortunately)",
                      re.IGNORECASE)
MAX_EXPLANATION_CHARS = 300


def printable(token: str) -> str:
    """A token string that cannot break the ``token<TAB>activation`` line format."""
    return token.replace("\n", "↵").replace("\t", "⇥").replace("\r", "")


def format_records(records: list[tuple[list[str], list[int]]], omit_zeros: bool = False, hide: bool = False) -> str:
    """``<start>`` / ``token\\tvalue`` lines / ``<end>`` blocks (values are already 0–10)."""
    blocks = []
    for tokens, values in records:
        pairs = [(t, v) for t, v in zip(tokens, values) if not (omit_zeros and v == 0)]
        blocks.append("\n".join(f"{printable(t)}\t{UNKNOWN if hide else int(v)}" for t, v in pairs))
    return "\n<start>\n" + "\n<end>\n<start>\n".join(blocks) + "\n<end>\n"


def _neuron_block(number: int, records: list[tuple[list[str], list[int]]]) -> str:
    text = f"\n\nNeuron {number}\nActivations:{format_records(records)}"
    values = [v for _, vs in records for v in vs]
    if values and sum(v > 0 for v in values) / len(values) < 0.2:  # repeat the active tokens when they are rare
        text += f"\nSame activations, but with all zeros filtered out:{format_records(records, omit_zeros=True)}"
    return text + f"\nExplanation of neuron {number} behavior: {EXPLANATION_PREFIX}"


def explain_messages(records: list[tuple[list[str], list[float]]], max_activation: float) -> list[dict]:
    """Chat messages asking for an explanation of a neuron from its (raw) activation records."""
    messages = [{"role": "system", "content": EXPLAIN_SYSTEM}]
    for i, shot in enumerate(FEW_SHOT):
        messages.append({"role": "user", "content": _neuron_block(i + 1, shot["records"])})
        messages.append({"role": "assistant", "content": f" {shot['explanation']}."})
    normalized = [(tokens, normalize(acts, max_activation)) for tokens, acts in records]
    messages.append({"role": "user", "content": _neuron_block(len(FEW_SHOT) + 1, normalized)})
    return messages


def parse_explanation(text: str) -> str:
    """The explanation in a reply; raises InvalidReply for an empty reply or a refusal."""
    if not isinstance(text, str):
        raise InvalidReply("explanation reply is not text")
    line = next((ln for ln in text.strip().splitlines() if ln.strip()), "").strip()
    if line.lower().startswith(EXPLANATION_PREFIX):
        line = line[len(EXPLANATION_PREFIX):].strip()
    if len(line) >= 2 and line[0] == line[-1] == '"' and line.count('"') == 2:  # the whole reply quoted
        line = line[1:-1].strip()
    line = line[:-1].rstrip() if line.endswith(".") else line
    if not line or not any(c.isalnum() for c in line):
        raise InvalidReply("empty explanation")
    if _REFUSAL.match(line):
        raise InvalidReply(f"the model refused: {line[:60]!r}")
    return line[:MAX_EXPLANATION_CHARS]


def _sim_user(number: int, explanation: str, tokens: list[str]) -> str:
    return (f"\n\nNeuron {number}\nExplanation of neuron {number} behavior: {EXPLANATION_PREFIX} {explanation}\n"
            f"Activations:{format_records([(tokens, [0] * len(tokens))], hide=True)}")


def simulate_messages(explanation: str, tokens: list[str]) -> list[dict]:
    """Messages whose reply lists ``token<TAB>activation`` for every token (read with logprobs)."""
    messages = [{"role": "system", "content": SIMULATE_SYSTEM}]
    for i, shot in enumerate(FEW_SHOT):
        shot_tokens, shot_values = shot["records"][0]
        messages.append({"role": "user", "content": _sim_user(i + 1, shot["explanation"], shot_tokens)})
        messages.append({"role": "assistant", "content": format_records([(shot_tokens, shot_values)]).strip()})
    messages.append({"role": "user", "content": _sim_user(len(FEW_SHOT) + 1, explanation, tokens)})
    return messages


def simulate_json_messages(explanation: str, tokens: list[str]) -> list[dict]:
    """Messages whose reply is ``{"activations": [n tokens integers]}``."""
    messages = [{"role": "system", "content": SIMULATE_JSON_SYSTEM}]
    for shot in FEW_SHOT:
        shot_tokens, shot_values = shot["records"][0]
        messages.append({"role": "user", "content": _json_user(shot["explanation"], shot_tokens)})
        messages.append({"role": "assistant", "content": json.dumps({"activations": shot_values})})
    messages.append({"role": "user", "content": _json_user(explanation, tokens)})
    return messages


def _json_user(explanation: str, tokens: list[str]) -> str:
    return (f"Explanation: {EXPLANATION_PREFIX} {explanation}\n"
            f"Tokens ({len(tokens)}): {json.dumps([printable(t) for t in tokens], ensure_ascii=False)}")


def parse_json_activations(obj, n_tokens: int) -> list[float]:
    """Validated activations from a parsed JSON reply: one number 0–10 per token, else InvalidReply."""
    values = obj.get("activations") if isinstance(obj, dict) else obj
    if not isinstance(values, list):
        raise InvalidReply("reply has no 'activations' list")
    if len(values) != n_tokens:
        raise InvalidReply(f"reply has {len(values)} activations for {n_tokens} tokens")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= MAX_NORMALIZED:
            raise InvalidReply(f"activation {v!r} is not a number from 0 to {MAX_NORMALIZED}")
        out.append(float(v))
    return out
