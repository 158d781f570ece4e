"""Attribution graphs as circuit-tracer's graph JSON (what its viewer and Neuronpedia's graph upload read).

The schema is circuit-tracer 0.5's ``frontend/graph_models.py`` (``Model`` = ``metadata``, ``qParams``,
``nodes``, ``links``), written the way its ``utils/create_graph_files.py`` writes a pruned graph:

- feature node: ``node_id = "{layer}_{feature}_{pos}"``, ``feature`` = Cantor pairing of (layer, feature),
  ``feature_type = "cross layer transcoder"`` (its name for every transcoder feature), ``jsNodeId = "{layer}_{feature}-0"``;
- error node: ``"0_{layer}_{pos}"``, ``feature = -1``, ``"mlp reconstruction error"`` (``"0_{layer}_{pos}_error"``
  where that id is also a kept feature's: feature ``layer`` of layer 0 at ``pos``);
- token node: ``"E_{token id}_{pos}"``, ``layer = "E"``, ``feature = pos``, ``"embedding"``;
- logit node: ``"{n_layers + 1}_{token id}_{last pos}"``, ``feature = token id``, ``"logit"``, its
  probability in ``token_prob``, ``is_target_logit`` for the most likely one, ``clerp = 'Output "tok" (p=0.123)'``;
- ``influence`` = the node's cumulative influence share (:class:`~tinyinterp.attribution.prune.PruneResult`),
  ``activation`` = a feature's activation; links ``{source, target, weight}`` carry the raw direct effects.

Only kept nodes and edges are written; nodes without a kept edge are dropped except tokens and logits.
A folder of graphs also holds ``graph-metadata.json`` (the list circuit-tracer's local server serves).
Our extra facts (model, thresholds, sizes before pruning) sit under ``metadata["tinyinterp"]``, which
pydantic's models ignore. :func:`load_graph_json` reads any such file back (ours or circuit-tracer's),
refusing a malformed one in one line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from tinyinterp.io.atomic import atomic_write_text
from tinyinterp.attribution.nodes import EMBEDDING, ERROR, FEATURE, GraphError, layout, node_ref, token_text
from tinyinterp.runs.layout import GRAPH_METADATA_FILE

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
FEATURE_TYPES = {FEATURE: "cross layer transcoder", ERROR: "mlp reconstruction error", EMBEDDING: "embedding",
                 "logit": "logit"}


def cantor_pairing(x: int, y: int) -> int:
    """circuit-tracer's unique integer for a (layer, feature) pair."""
    return (x + y) * (x + y + 1) // 2 + y


def graph_slug(prompt: str) -> str:
    """A file-name-safe id of a prompt: its first words, lower case, plus a short hash (distinct prompts differ)."""
    words = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:40].strip("-") or "graph"
    return f"{words}-{hashlib.sha256(prompt.encode('utf-8')).hexdigest()[:8]}"


def _node(ref, graph, lay, tokenizer, influence: float, clerps: dict) -> dict:
    node = {"node_id": "", "feature": 0, "layer": "", "ctx_idx": ref.pos, "feature_type": FEATURE_TYPES[ref.kind],
            "token_prob": 0.0, "is_target_logit": False, "run_idx": 0, "reverse_ctx_idx": 0, "jsNodeId": "",
            "clerp": "", "influence": influence, "activation": None}
    if ref.kind == FEATURE:
        node.update(node_id=f"{ref.layer}_{ref.feature}_{ref.pos}", feature=cantor_pairing(ref.layer, ref.feature),
                    layer=str(ref.layer), jsNodeId=f"{ref.layer}_{ref.feature}-0",
                    activation=float(graph.activation_values[ref.active_index]),
                    clerp=clerps.get((ref.layer, ref.feature), ""))
    elif ref.kind == ERROR:
        node.update(node_id=f"0_{ref.layer}_{ref.pos}", feature=-1, layer=str(ref.layer),
                    jsNodeId=f"{ref.layer}_{ref.pos}-0")
    elif ref.kind == EMBEDDING:
        node.update(node_id=f"E_{ref.token}_{ref.pos}", feature=ref.pos, layer="E", jsNodeId=f"E_{ref.token}-{ref.pos}")
    else:
        i = ref.index - lay.logit_start
        prob = float(graph.logit_probabilities[i])
        layer = str(lay.n_layers + 1)
        node.update(node_id=f"{layer}_{ref.token}_{ref.pos}", feature=ref.token, layer=layer, token_prob=prob,
                    is_target_logit=i == 0, jsNodeId=f"L_{ref.token}-{ref.pos}", influence=None,
                    clerp=f'Output "{token_text(tokenizer, ref.token)}" (p={prob:.3f})')
    return node


def _disambiguate_error_ids(nodes: dict[int, dict]) -> None:
    """circuit-tracer's ids collide: the error node of layer L at position P is ``0_L_P``, which is also the
    id of feature L of layer 0 at P. When both are kept, the error node becomes ``0_L_P_error`` (links name
    nodes by id, so a duplicate would make them ambiguous); every other id stays circuit-tracer's."""
    feature_ids = {n["node_id"] for n in nodes.values() if n["feature_type"] == FEATURE_TYPES[FEATURE]}
    for n in nodes.values():
        if n["feature_type"] == FEATURE_TYPES[ERROR] and n["node_id"] in feature_ids:
            n["node_id"] += "_error"


def graph_to_json(graph, slug: str, prune=None, tokenizer=None, clerps: dict | None = None) -> dict:
    """circuit-tracer's ``Model`` as a dict. ``prune``: a PruneResult (default: prune with the defaults);
    ``clerps``: {(layer, feature): explanation} for the features' ``clerp`` labels."""
    from tinyinterp.attribution.prune import prune_graph

    prune = prune if prune is not None else prune_graph(graph)
    lay = layout(graph)
    clerps = clerps or {}
    kept = prune.node_mask.nonzero(as_tuple=True)[0].tolist()
    nodes = {i: _node(node_ref(graph, i, lay), graph, lay, tokenizer, float(prune.cumulative_scores[i]), clerps)
             for i in kept}
    _disambiguate_error_ids(nodes)
    targets, sources = prune.edge_mask.nonzero(as_tuple=True)
    weights = graph.adjacency_matrix[targets, sources].tolist()
    links = [{"source": nodes[s]["node_id"], "target": nodes[t]["node_id"], "weight": w}
             for s, t, w in zip(sources.tolist(), targets.tolist(), weights) if s in nodes and t in nodes]
    connected = {x for link in links for x in (link["source"], link["target"])}
    used = [n for n in nodes.values() if n["node_id"] in connected or n["feature_type"] in ("embedding", "logit")]
    metadata = {
        "slug": slug, "scan": str(graph.scan or ""), "transcoder_list": [],
        "prompt_tokens": [token_text(tokenizer, int(t)) for t in graph.input_tokens.tolist()],
        "prompt": graph.input_string, "node_threshold": prune.node_threshold, "schema_version": SCHEMA_VERSION,
        "tinyinterp": {"model_name": str(graph.model_name or ""), "edge_threshold": prune.edge_threshold,
                       "n_layers": lay.n_layers, "n_nodes_before": lay.n_nodes,
                       "n_edges_before": int((graph.adjacency_matrix != 0).sum()),
                       "n_nodes": len(used), "n_links": len(links),
                       "logit_tokens": [int(t) for t in graph.logit_tokens.tolist()]},
    }
    qparams = {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""}
    return {"metadata": metadata, "qParams": qparams, "nodes": used, "links": links}


def save_graph_json(graph, path: str | Path, slug: str | None = None, prune=None, tokenizer=None,
                    clerps: dict | None = None) -> Path:
    """Write ``path`` (atomically) and add its metadata to ``graph-metadata.json`` beside it."""
    path = Path(path)
    if path.suffix != ".json":
        raise GraphError(f"--out {path}: a graph file must end in .json")
    slug = slug or path.stem
    model = graph_to_json(graph, slug, prune=prune, tokenizer=tokenizer, clerps=clerps)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(model, indent=1))
    _add_to_index(path.parent / GRAPH_METADATA_FILE, model["metadata"])
    log.info("wrote %s (%d nodes, %d links)", path, len(model["nodes"]), len(model["links"]))
    return path


def _add_to_index(index: Path, metadata: dict) -> None:
    graphs = []
    if index.is_file():
        try:
            graphs = json.loads(index.read_text(encoding="utf-8")).get("graphs", [])
        except (json.JSONDecodeError, AttributeError):
            log.warning("%s was unreadable; starting it again", index)
    graphs = [g for g in graphs if isinstance(g, dict) and g.get("slug") != metadata["slug"]]
    graphs.append({k: v for k, v in metadata.items() if k != "tinyinterp"})
    atomic_write_text(index, json.dumps({"graphs": graphs}, indent=1))


# -- reading ----------------------------------------------------------------------------------------

_NUMBER = (int, float)
_REQUIRED_METADATA = {"slug": str, "scan": str, "transcoder_list": list, "prompt_tokens": list, "prompt": str}
_REQUIRED_NODE = {"node_id": str, "feature": int, "layer": str, "ctx_idx": int, "feature_type": str}
_OPTIONAL_NODE = {"token_prob": _NUMBER, "is_target_logit": bool, "run_idx": int, "reverse_ctx_idx": int,
                  "jsNodeId": str, "clerp": str, "influence": (*_NUMBER, type(None)), "activation": (*_NUMBER, type(None))}


@dataclass
class GraphJSON:
    """A graph file as read back: circuit-tracer's four parts, plain Python values."""

    path: Path
    metadata: dict
    qparams: dict
    nodes: list[dict]
    links: list[dict]
    by_id: dict[str, dict] = field(default_factory=dict, repr=False)

    @property
    def slug(self) -> str:
        return self.metadata["slug"]

    def node(self, node_id: str) -> dict:
        return self.by_id[node_id]

    def nodes_of_type(self, feature_type: str) -> list[dict]:
        return [n for n in self.nodes if n["feature_type"] == feature_type]


def _typed(value, kinds) -> bool:
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    if isinstance(value, bool) and bool not in kinds:
        return False
    return isinstance(value, kinds)


def load_graph_json(path: str | Path) -> GraphJSON:
    """Read and check a graph file; a malformed one is a one-line :class:`GraphError` naming the file and field."""
    path = Path(path)
    if not path.is_file():
        raise GraphError(f"{path}: no graph file there")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise GraphError(f"{path}: not valid JSON ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise GraphError(f"{path}: a graph file is a JSON object with metadata, qParams, nodes and links")
    for key, kind in (("metadata", dict), ("nodes", list), ("links", list)):
        if not isinstance(raw.get(key), kind):
            raise GraphError(f"{path}: '{key}' is missing or not a JSON {'object' if kind is dict else 'list'}")
    meta = raw["metadata"]
    for key, kind in _REQUIRED_METADATA.items():
        if not _typed(meta.get(key), kind):
            raise GraphError(f"{path}: metadata.{key} is missing or not a {kind.__name__}")
    by_id: dict[str, dict] = {}
    for i, node in enumerate(raw["nodes"]):
        if not isinstance(node, dict):
            raise GraphError(f"{path}: nodes[{i}] is not an object")
        for key, kind in _REQUIRED_NODE.items():
            if not _typed(node.get(key), kind):
                raise GraphError(f"{path}: nodes[{i}].{key} is missing or not a {kind.__name__}")
        for key, kind in _OPTIONAL_NODE.items():
            if key in node and not _typed(node[key], kind):
                raise GraphError(f"{path}: nodes[{i}].{key} has the wrong type ({type(node[key]).__name__})")
        node.setdefault("jsNodeId", node["node_id"])
        if node["node_id"] in by_id:
            raise GraphError(f"{path}: node id {node['node_id']!r} appears twice")
        by_id[node["node_id"]] = node
    for i, link in enumerate(raw["links"]):
        if not isinstance(link, dict) or not _typed(link.get("weight"), _NUMBER):
            raise GraphError(f"{path}: links[{i}] needs source, target and a numeric weight")
        for end in ("source", "target"):
            if not isinstance(link.get(end), str) or link[end] not in by_id:
                raise GraphError(f"{path}: links[{i}].{end} {link.get(end)!r} is not a node id of the file")
    qparams = raw.get("qParams") if isinstance(raw.get("qParams"), dict) else {}
    return GraphJSON(path, meta, qparams, raw["nodes"], raw["links"], by_id)
