"""Hand-written attribution graphs in circuit-tracer's graph JSON schema, for the app tests.

The schema restated from circuit-tracer 0.5 (``frontend/graph_models.py``: ``Metadata``, ``Node``, ``Link``;
node ids from ``Node.feature_node`` / ``error_node`` / ``token_node`` / ``logit_node``): feature
``{layer}_{feature}_{pos}`` (``feature`` = Cantor pairing of layer and feature id), error ``0_{layer}_{pos}``,
embedding ``E_{vocab}_{pos}``, logit ``{n_layers + 1}_{vocab}_{pos}``. :func:`small_graph` is a two-layer
graph over a four-token prompt with a known strongest path (``E`` at pos 3 → L0 F5 → L1 F7 → the top logit).
"""

from __future__ import annotations

import json
from pathlib import Path


def cantor(x: int, y: int) -> int:
    return (x + y) * (x + y + 1) // 2 + y


def feature_node(layer: int, pos: int, feature: int, influence: float, activation: float, clerp: str = "") -> dict:
    return {"node_id": f"{layer}_{feature}_{pos}", "feature": cantor(layer, feature), "layer": str(layer), "ctx_idx": pos,
            "feature_type": "cross layer transcoder", "jsNodeId": f"{layer}_{feature}-0", "influence": influence,
            "activation": activation, "token_prob": 0.0, "is_target_logit": False, "run_idx": 0, "reverse_ctx_idx": 0,
            "clerp": clerp}


def error_node(layer: int, pos: int, influence: float) -> dict:
    return {"node_id": f"0_{layer}_{pos}", "feature": -1, "layer": str(layer), "ctx_idx": pos,
            "feature_type": "mlp reconstruction error", "jsNodeId": f"{layer}_{pos}-0", "influence": influence,
            "activation": None, "token_prob": 0.0, "is_target_logit": False, "run_idx": 0, "reverse_ctx_idx": 0,
            "clerp": ""}


def token_node(pos: int, vocab: int, influence: float = 0.1) -> dict:
    return {"node_id": f"E_{vocab}_{pos}", "feature": pos, "layer": "E", "ctx_idx": pos, "feature_type": "embedding",
            "jsNodeId": f"E_{vocab}-{pos}", "influence": influence, "activation": None, "token_prob": 0.0,
            "is_target_logit": False, "run_idx": 0, "reverse_ctx_idx": 0, "clerp": ""}


def logit_node(pos: int, vocab: int, token: str, n_layers: int, prob: float, target: bool = False) -> dict:
    layer = str(n_layers + 1)
    return {"node_id": f"{layer}_{vocab}_{pos}", "feature": vocab, "layer": layer, "ctx_idx": pos, "feature_type": "logit",
            "jsNodeId": f"L_{vocab}-{pos}", "influence": None, "activation": None, "token_prob": prob,
            "is_target_logit": target, "run_idx": 0, "reverse_ctx_idx": 0, "clerp": f'Output "{token}" (p={prob:.3f})'}


def small_graph(tokens: list[str] | None = None, logit_tokens: tuple[str, str] = (" Lily", " Tom"),
                prompt: str | None = None, clerp: str = "a name is coming") -> dict:
    tokens = tokens or ["<|endoftext|>", "Once", " upon", " a"]
    n = len(tokens)
    last = n - 1
    nodes = [token_node(p, 100 + p) for p in range(n)]
    # influence: the cumulative influence share, as circuit-tracer writes it (smaller = more influential)
    nodes += [feature_node(0, last, 5, 0.6, 2.5), feature_node(0, 1, 9, 0.75, 1.0), feature_node(1, last, 7, 0.3, 3.0, clerp),
              error_node(0, last, 0.8), error_node(1, last, 0.78)]
    nodes += [logit_node(last, 200, logit_tokens[0], 2, 0.6, target=True), logit_node(last, 201, logit_tokens[1], 2, 0.3)]
    e = {p: f"E_{100 + p}_{p}" for p in range(n)}
    f05, f09, f17 = f"0_5_{last}", "0_9_1", f"1_7_{last}"
    err0, err1 = f"0_0_{last}", f"0_1_{last}"
    lily, tom = f"3_200_{last}", f"3_201_{last}"
    links = [(e[last], f05, 2.0), (e[1], f09, 1.0), (e[1], f05, 0.2), (f05, f17, 1.5), (f09, f17, 0.3), (err0, f17, 0.1),
             (e[last], f17, 0.2), (f17, lily, 3.0), (f17, tom, -0.8), (f05, lily, 0.4), (err1, lily, 0.2), (e[0], lily, 0.1)]
    return {
        "metadata": {"slug": "small", "scan": "test-scan", "transcoder_list": [], "prompt_tokens": tokens,
                     "prompt": prompt if prompt is not None else "".join(tokens[1:]), "node_threshold": 0.8,
                     "schema_version": 1},
        "qParams": {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""},
        "nodes": nodes,
        "links": [{"source": s, "target": t, "weight": w} for s, t, w in links],
    }


def write_graph(path: Path, graph: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(graph))
    return path
