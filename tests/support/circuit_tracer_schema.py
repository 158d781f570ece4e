"""circuit-tracer 0.5's graph JSON schema, restated from its source (``frontend/graph_models.py``,
``utils/create_graph_files.py``) so tests can check our files without installing it.

``Metadata``, ``QParams``, ``Node``, ``Link`` and ``Model``: each field's type and whether it has a
default (pydantic's rules: an ``int`` field takes no float, a ``float`` field takes an int, ``str``
takes no number). The node-id conventions are those of ``Node.feature_node`` / ``error_node`` /
``token_node`` / ``logit_node``.
"""

from __future__ import annotations

import re

REQUIRED, OPTIONAL = "required", "optional"

METADATA = {"slug": (str, REQUIRED), "scan": (str, REQUIRED), "transcoder_list": (list, REQUIRED),
            "prompt_tokens": (list, REQUIRED), "prompt": (str, REQUIRED),
            "node_threshold": ((float, type(None)), OPTIONAL), "schema_version": ((int, type(None)), OPTIONAL)}
QPARAMS = {"pinnedIds": (list, REQUIRED), "supernodes": (list, REQUIRED), "linkType": (str, REQUIRED),
           "clickedId": (str, REQUIRED), "sg_pos": (str, REQUIRED)}
NODE = {"node_id": (str, REQUIRED), "feature": (int, REQUIRED), "layer": (str, REQUIRED), "ctx_idx": (int, REQUIRED),
        "feature_type": (str, REQUIRED), "token_prob": (float, OPTIONAL), "is_target_logit": (bool, OPTIONAL),
        "run_idx": (int, OPTIONAL), "reverse_ctx_idx": (int, OPTIONAL), "jsNodeId": (str, REQUIRED),
        "clerp": (str, OPTIONAL), "influence": ((float, type(None)), OPTIONAL),
        "activation": ((float, type(None)), OPTIONAL)}
LINK = {"source": (str, REQUIRED), "target": (str, REQUIRED), "weight": (float, REQUIRED)}
MODEL = {"metadata": (dict, REQUIRED), "qParams": (dict, REQUIRED), "nodes": (list, REQUIRED), "links": (list, REQUIRED)}
FEATURE_TYPES = {"cross layer transcoder", "mlp reconstruction error", "embedding", "logit"}


def _accepts(value, kinds) -> bool:
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    if isinstance(value, bool):
        return bool in kinds
    if isinstance(value, int) and float in kinds:
        return True
    return isinstance(value, kinds)


def check_fields(obj: dict, fields: dict, where: str) -> list[str]:
    problems = []
    for name, (kinds, need) in fields.items():
        if name not in obj:
            if need == REQUIRED and not (where.startswith("node") and name == "jsNodeId"):  # Node copies node_id
                problems.append(f"{where}: missing {name}")
        elif not _accepts(obj[name], kinds):
            problems.append(f"{where}.{name}: {obj[name]!r} is not {kinds}")
    return problems


def cantor(x: int, y: int) -> int:
    return (x + y) * (x + y + 1) // 2 + y


def check_node_conventions(node: dict, n_layers: int) -> list[str]:
    """The id, feature and layer the node's feature_type implies (create_graph_files.create_nodes)."""
    t, nid, where = node["feature_type"], node["node_id"], f"node {node['node_id']}"
    if t not in FEATURE_TYPES:
        return [f"{where}: unknown feature_type {t!r}"]
    if t == "cross layer transcoder":
        m = re.fullmatch(r"(\d+)_(\d+)_(\d+)", nid)
        ok = m and node["layer"] == m[1] and node["ctx_idx"] == int(m[3]) and node["feature"] == cantor(int(m[1]), int(m[2])) \
            and node["jsNodeId"] == f"{m[1]}_{m[2]}-0"
    elif t == "mlp reconstruction error":
        m = re.fullmatch(r"0_(\d+)_(\d+)(?:_error)?", nid)  # the suffix: ours, where circuit-tracer's id collides
        ok = m and node["layer"] == m[1] and node["ctx_idx"] == int(m[2]) and node["feature"] == -1
    elif t == "embedding":
        m = re.fullmatch(r"E_(\d+)_(\d+)", nid)
        ok = m and node["layer"] == "E" and node["feature"] == int(m[2]) == node["ctx_idx"] \
            and node["jsNodeId"] == f"E_{m[1]}-{m[2]}"
    else:
        m = re.fullmatch(r"(\d+)_(\d+)_(\d+)", nid)
        ok = m and node["layer"] == str(n_layers + 1) == m[1] and node["feature"] == int(m[2]) \
            and node["jsNodeId"] == f"L_{m[2]}-{m[3]}" and node["clerp"].startswith("Output ")
    return [] if ok else [f"{where}: id/feature/layer do not follow circuit-tracer's {t!r} convention"]


def validate(model: dict, n_layers: int) -> list[str]:
    """Every way ``model`` differs from circuit-tracer's schema (empty = valid)."""
    problems = check_fields(model, MODEL, "model")
    if problems:
        return problems
    problems += check_fields(model["metadata"], METADATA, "metadata")
    problems += check_fields(model["qParams"], QPARAMS, "qParams")
    for i, node in enumerate(model["nodes"]):
        problems += check_fields(node, NODE, f"nodes[{i}]") or check_node_conventions(node, n_layers)
    ids = [n["node_id"] for n in model["nodes"]]
    if len(set(ids)) != len(ids):
        problems.append("node ids are not unique")
    for i, link in enumerate(model["links"]):
        problems += check_fields(link, LINK, f"links[{i}]")
        if link.get("source") not in ids or link.get("target") not in ids:
            problems.append(f"links[{i}] names a node that is not in the file")
    return problems
