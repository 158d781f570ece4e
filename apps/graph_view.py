"""An attribution graph as the Attribution page shows it: parsed from circuit-tracer's graph JSON, laid out by
layer and position, drawn as an SVG that is escaped by construction, and searched for its strongest paths.

A saved graph is a data file someone else wrote (``analysis/graphs/<slug>.json``, circuit-tracer's schema:
``metadata`` with ``prompt_tokens``, ``nodes`` with ``node_id``/``layer``/``ctx_idx``/``feature_type``/
``influence``/``activation``, ``links`` with ``source``/``target``/``weight``). :func:`parse_graph` checks every
field the page uses and turns a malformed file into one :class:`~tinyinterp.errors.DataError` line naming it.
Nothing here imports Streamlit, so the tests call it directly.

Layout (as circuit-tracer's viewer): rows are token embeddings (bottom), layers 0 … n-1 (features and error
nodes), logits (top); columns are prompt positions, each as wide as its busiest (row, position) cell. The page
draws it with Vega (:mod:`apps.graph_chart`); :func:`graph_svg` is the same drawing as a standalone SVG file (the
download button). Every string that reaches the SVG (tokens, clerps, ids) goes through :func:`svg_text`:
HTML-escaped, newlines and bidirectional-control characters made visible (:func:`visible_text`, also used for
the chart and tables), so a token ``<script>`` or a right-to-left override is text.

    >>> view = parse_graph(json.load(open("graph.json")), "graph.json")
    >>> svg = graph_svg(view, max_links=200)
    >>> strongest_paths(view, view.default_logit(), k=5)
"""

from __future__ import annotations

import heapq
import html
import math
import re
import unicodedata
from dataclasses import dataclass, field

from tinyinterp.errors import DataError

EMBEDDING, LOGIT, ERROR = "embedding", "logit", "mlp reconstruction error"
FEATURE_TYPES = ("cross layer transcoder", "transcoder", "per layer transcoder")
"""circuit-tracer names every transcoder feature "cross layer transcoder", also for per-layer transcoders."""
KINDS = {EMBEDDING: "embedding", LOGIT: "logit", ERROR: "error", **{t: "feature" for t in FEATURE_TYPES}}
MAX_NODES, MAX_LINKS = 20_000, 500_000
"""Far above any pruned graph; a file beyond them is refused rather than drawn for minutes."""
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_LOGIT_CLERP = re.compile(r'^Output "(.*)" \(p=[^)]*\)$', re.S)


@dataclass(frozen=True)
class GraphNode:
    node_id: str
    kind: str
    """``embedding``, ``feature``, ``error`` or ``logit``."""
    layer: int | None
    """Transformer layer of a feature / error node (None for embeddings and logits)."""
    pos: int
    feature: int | None
    """The transcoder feature id (from the node id ``{layer}_{feature}_{pos}``); a logit's vocabulary id."""
    influence: float | None
    """circuit-tracer's cumulative influence share: 0 = the most influential node, near the threshold = barely kept."""
    activation: float | None
    token_prob: float
    is_target_logit: bool
    label: str
    """What the node stands for: a token (embeddings, logits), ``L3 F17``, ``error L3``."""
    clerp: str = ""
    """A feature's explanation (circuit-tracer's ``clerp``; ``tinyinterp explain RUN --dict``), else empty."""

    @property
    def row(self) -> int:
        return 0 if self.kind == EMBEDDING else -1 if self.kind == LOGIT else int(self.layer) + 1


@dataclass(frozen=True)
class GraphLink:
    source: str
    target: str
    weight: float


@dataclass
class GraphView:
    slug: str
    prompt: str
    prompt_tokens: list[str]
    scan: str
    transcoder_list: list[str]
    nodes: dict[str, GraphNode]
    links: list[GraphLink]
    n_layers: int
    node_threshold: float | None = None
    incoming: dict[str, list[GraphLink]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.incoming = {}
        for link in self.links:
            self.incoming.setdefault(link.target, []).append(link)

    def of_kind(self, kind: str) -> list[GraphNode]:
        return [n for n in self.nodes.values() if n.kind == kind]

    def logits(self) -> list[GraphNode]:
        """Logit nodes, most probable first."""
        return sorted(self.of_kind("logit"), key=lambda n: -n.token_prob)

    def default_logit(self) -> GraphNode | None:
        logits = self.logits()
        return next((n for n in logits if n.is_target_logit), logits[0] if logits else None)

    def row_of(self, node: GraphNode) -> int:
        return self.n_layers + 1 if node.kind == LOGIT else node.row

    def summary(self) -> dict[str, int]:
        counts = {k: 0 for k in ("feature", "error", "embedding", "logit")}
        for n in self.nodes.values():
            counts[n.kind] += 1
        return {**counts, "links": len(self.links)}


# ----- parsing ------------------------------------------------------------------------------------------


def _field(record: dict, name: str, kinds: tuple[type, ...], where: str, optional: bool = False):
    value = record.get(name)
    if value is None and optional:
        return None
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        raise DataError(f"{where}: field {name!r} must be {'/'.join(k.__name__ for k in kinds)}, got {type(value).__name__}")
    return value


def _number(record: dict, name: str, where: str, optional: bool = True) -> float | None:
    value = _field(record, name, (int, float), where, optional)
    if value is None:
        return None
    value = float(value)
    if not math.isfinite(value):
        raise DataError(f"{where}: field {name!r} is not a finite number")
    return value


def _int(text: str) -> int | None:
    return int(text) if re.fullmatch(r"-?\d{1,9}", text) else None


def _node(raw: object, i: int, name: str, tokens: list[str]) -> GraphNode:
    where = f"{name}: node {i}"
    if not isinstance(raw, dict):
        raise DataError(f"{where}: expected an object")
    node_id = _field(raw, "node_id", (str,), where)
    kind = KINDS.get(_field(raw, "feature_type", (str,), where))
    if kind is None:
        raise DataError(f"{where}: unknown feature_type {raw['feature_type'][:40]!r} (expected one of {sorted(KINDS)})")
    pos = _field(raw, "ctx_idx", (int,), where)
    if not 0 <= pos < len(tokens):
        raise DataError(f"{where}: ctx_idx {pos} is outside the prompt's {len(tokens)} tokens")
    layer_text = _field(raw, "layer", (str, int), where)
    layer = feature = None
    label = clerp = ""
    if kind in ("feature", "error"):
        layer = _int(str(layer_text))
        # an error node whose circuit-tracer id is also a feature's carries "_error" (graph_json._disambiguate_error_ids)
        bare = node_id.removesuffix("_error") if kind == "error" else node_id
        parts = [_int(p) for p in bare.split("_")]
        if layer is None or layer < 0 or len(parts) != 3 or None in parts:
            raise DataError(f"{where}: node_id {node_id[:40]!r} / layer {str(layer_text)[:10]!r} are not "
                            "circuit-tracer's '{layer}_{feature}_{pos}' / '0_{layer}_{pos}'")
        if kind == "feature":
            feature = parts[1]
            label = f"L{layer} F{feature}"
            clerp = raw.get("clerp") if isinstance(raw.get("clerp"), str) else ""
        else:
            label = f"error L{layer}"
    elif kind == "embedding":
        label = tokens[pos]
    else:
        feature = _field(raw, "feature", (int,), where)
        clerp = raw.get("clerp") if isinstance(raw.get("clerp"), str) else ""
        match = _LOGIT_CLERP.match(clerp)
        label = match.group(1) if match else clerp or f"token {feature}"
    prob = _number(raw, "token_prob", where) or 0.0
    return GraphNode(node_id=node_id, kind=kind, layer=layer, pos=pos, feature=feature,
                     influence=_number(raw, "influence", where), activation=_number(raw, "activation", where),
                     token_prob=prob, is_target_logit=raw.get("is_target_logit") is True, label=label,
                     clerp=clerp[:500])


def parse_graph(data: object, name: str) -> GraphView:
    """A graph JSON document (circuit-tracer's schema) as a :class:`GraphView`; one-line DataError if malformed."""
    if not isinstance(data, dict):
        raise DataError(f"{name}: expected a graph object with metadata, nodes and links")
    meta = data.get("metadata")
    if not isinstance(meta, dict):
        raise DataError(f"{name}: no 'metadata' object")
    tokens = _field(meta, "prompt_tokens", (list,), f"{name}: metadata")
    if not tokens or not all(isinstance(t, str) for t in tokens):
        raise DataError(f"{name}: metadata.prompt_tokens must be a non-empty list of strings")
    raw_nodes, raw_links = data.get("nodes"), data.get("links")
    if not isinstance(raw_nodes, list) or not isinstance(raw_links, list):
        raise DataError(f"{name}: 'nodes' and 'links' must be lists")
    if len(raw_nodes) > MAX_NODES or len(raw_links) > MAX_LINKS:
        raise DataError(f"{name}: {len(raw_nodes)} nodes / {len(raw_links)} links is more than the page draws "
                        f"({MAX_NODES} / {MAX_LINKS}); prune it (tinyinterp attribute --node-threshold)")
    nodes: dict[str, GraphNode] = {}
    for i, raw in enumerate(raw_nodes):
        node = _node(raw, i, name, tokens)
        if node.node_id in nodes:
            raise DataError(f"{name}: node {i}: duplicate node_id {node.node_id[:40]!r}")
        nodes[node.node_id] = node
    links = []
    for i, raw in enumerate(raw_links):
        where = f"{name}: link {i}"
        if not isinstance(raw, dict):
            raise DataError(f"{where}: expected an object")
        source, target = _field(raw, "source", (str,), where), _field(raw, "target", (str,), where)
        for end in (source, target):
            if end not in nodes:
                raise DataError(f"{where}: names node {end[:40]!r}, which is not in 'nodes'")
        links.append(GraphLink(source, target, _number(raw, "weight", where, optional=False)))
    layers = [n.layer for n in nodes.values() if n.layer is not None]
    logit_layers = [_int(str(r.get("layer"))) for r in raw_nodes if r.get("feature_type") == LOGIT]
    n_layers = max([l - 1 for l in logit_layers if l is not None] + [max(layers, default=-1) + 1])
    threshold = meta.get("node_threshold")
    return GraphView(
        slug=str(meta.get("slug", "")), prompt=str(meta.get("prompt", "")), prompt_tokens=list(tokens),
        scan=str(meta.get("scan", "")),
        transcoder_list=[str(t) for t in meta.get("transcoder_list", []) if isinstance(t, (str, int))]
        if isinstance(meta.get("transcoder_list"), list) else [],
        nodes=nodes, links=links, n_layers=n_layers,
        node_threshold=float(threshold) if isinstance(threshold, (int, float)) and not isinstance(threshold, bool) else None,
    )


# ----- text ---------------------------------------------------------------------------------------------


def visible_text(text: str, limit: int | None = None) -> str:
    """``text`` with newlines as ↵, tabs as →, and bidi controls / other invisible format characters as
    ``⟨U+202E⟩`` (a right-to-left override in a token must not flip the labels around it)."""
    out = text.replace("\r", "").replace("\n", "↵").replace("\t", "→")
    out = _BIDI.sub(lambda m: f"⟨U+{ord(m.group(0)):04X}⟩", out)
    out = "".join(f"⟨U+{ord(c):04X}⟩" if unicodedata.category(c) in ("Cc", "Cf") else c for c in out)
    if limit is not None and len(out) > limit:
        out = out[: limit - 1] + "…"
    return out


def svg_text(text: str, limit: int | None = None) -> str:
    """A data string as SVG/HTML text content or attribute value: made visible, then escaped."""
    return html.escape(visible_text(str(text), limit), quote=True)


def describe(node: GraphNode, tokens: list[str]) -> str:
    """One plain-text line about a node (hover text, table cells)."""
    at = f"pos {node.pos} {visible_text(repr(tokens[node.pos]) if node.pos < len(tokens) else '')}"
    if node.kind == "logit":
        return f"logit {visible_text(repr(node.label))} (p={node.token_prob:.3f})"
    if node.kind == "embedding":
        return f"embedding of {at}"
    extra = "" if node.activation is None else f", activation {node.activation:.3g}"
    infl = "" if node.influence is None else f", influence {node.influence:.3g}"
    about = f" — {visible_text(node.clerp, 120)}" if node.clerp else ""
    return f"{node.label} at {at}{extra}{infl}{about}"


# ----- layout and drawing -------------------------------------------------------------------------------

CELL_W, ROW_H, PAD_L, PAD_T, PAD_B = 26, 58, 52, 60, 70
MAX_LABEL = 14


def layout(view: GraphView) -> tuple[dict[str, tuple[float, float]], float, float, list[float]]:
    """Node positions ``{node_id: (x, y)}``, the drawing's width and height, and each column's left edge."""
    n_pos = max(len(view.prompt_tokens), 1)
    cells: dict[tuple[int, int], list[GraphNode]] = {}
    for node in view.nodes.values():
        cells.setdefault((view.row_of(node), node.pos), []).append(node)
    widest = [1] * n_pos
    for (_, pos), members in cells.items():
        widest[pos] = max(widest[pos], len(members))
    # a column fits its busiest cell (capped: a hundred features at one position share its width); a position
    # with nothing but its token stays narrow
    widths = [(2 if w <= 1 else min(w + 1, 12)) * CELL_W for w in widest]
    lefts = [PAD_L + sum(widths[:i]) for i in range(n_pos)]
    n_rows = view.n_layers + 2
    height = PAD_T + n_rows * ROW_H + PAD_B
    where = {}
    for (row, pos), members in cells.items():
        # most influential first (``influence`` is the cumulative share: smaller = more), logits by probability
        members = sorted(members, key=lambda n: (-n.token_prob, n.influence if n.influence is not None else 1.0,
                                                 n.node_id))
        step = widths[pos] / (len(members) + 1)
        y = PAD_T + (n_rows - 1 - row) * ROW_H + ROW_H / 2
        for i, node in enumerate(members):
            where[node.node_id] = (lefts[pos] + step * (i + 1), y)
    return where, lefts[-1] + widths[-1] + 10, height, lefts


def _rgb(weight: float) -> str:
    from apps.render import NEGATIVE_RGB, POSITIVE_RGB

    r, g, b = POSITIVE_RGB if weight >= 0 else NEGATIVE_RGB
    return f"rgb({r},{g},{b})"


def shown_links(view: GraphView, max_links: int) -> list[GraphLink]:
    """The ``max_links`` strongest links (by |weight|)."""
    return heapq.nlargest(max_links, view.links, key=lambda l: abs(l.weight))


def graph_svg(view: GraphView, max_links: int = 300, highlight: set[str] | None = None,
              feature_href=None) -> str:
    """The graph as an inline SVG: edges coloured by sign (blue +, red −), width and opacity by |weight|;
    features are circles (linked to ``feature_href(node)`` when given), error nodes grey squares, embeddings
    and logits labelled with their tokens. ``highlight``: node ids drawn with a dark ring (the chosen path)."""
    where, width, height, lefts = layout(view)
    highlight = highlight or set()
    links = shown_links(view, max_links)
    top = max((abs(l.weight) for l in links), default=0.0) or 1.0
    n_rows = view.n_layers + 2
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="attribution-graph" width="{width:.0f}" '
             f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" font-family="sans-serif" font-size="10">']
    for row in range(n_rows):
        y = PAD_T + (n_rows - 1 - row) * ROW_H
        name = "Emb" if row == 0 else "Lgt" if row == n_rows - 1 else f"L{row - 1}"
        fill = "#f0eee7" if row in (0, n_rows - 1) else ("#f7f6f2" if row % 2 else "#fbfaf7")
        parts.append(f'<rect x="{PAD_L}" y="{y}" width="{width - PAD_L - 10:.0f}" height="{ROW_H}" fill="{fill}"/>'
                     f'<text x="{PAD_L - 6}" y="{y + ROW_H / 2 + 3:.0f}" text-anchor="end" fill="#555">{name}</text>')
    base = PAD_T + n_rows * ROW_H
    for pos, token in enumerate(view.prompt_tokens):
        x = lefts[pos] + 4
        parts.append(f'<text class="token" x="{x:.0f}" y="{base + 12}" transform="rotate(35 {x:.0f} {base + 12})" '
                     f'fill="#333">{svg_text(token, MAX_LABEL)}</text>')
    for link in sorted(links, key=lambda l: abs(l.weight)):
        (x1, y1), (x2, y2) = where[link.source], where[link.target]
        strength = abs(link.weight) / top
        parts.append(f'<line class="link" x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
                     f'stroke="{_rgb(link.weight)}" stroke-opacity="{0.15 + 0.75 * strength:.2f}" '
                     f'stroke-width="{0.4 + 3.6 * strength:.2f}"><title>{svg_text(link.source)} → '
                     f'{svg_text(link.target)}: {link.weight:.4g}</title></line>')
    for node in view.nodes.values():
        x, y = where[node.node_id]
        title = f"<title>{svg_text(describe(node, view.prompt_tokens))}</title>"
        ring = ' stroke="#111" stroke-width="2"' if node.node_id in highlight else ' stroke="#444" stroke-width="0.6"'
        if node.kind == "feature":
            shape = f'<circle class="node feature" cx="{x:.1f}" cy="{y:.1f}" r="5" fill="#f3c86a"{ring}>{title}</circle>'
            if feature_href is not None:
                href = feature_href(node)
                if href:
                    shape = f'<a href="{html.escape(href, quote=True)}" target="_self">{shape}</a>'
        elif node.kind == "error":
            shape = (f'<rect class="node error" x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" fill="#bbb"{ring}>'
                     f'{title}</rect>')
        elif node.kind == "embedding":
            shape = (f'<rect class="node embedding" x="{x - 5:.1f}" y="{y - 5:.1f}" width="10" height="10" '
                     f'fill="#9ec5e8"{ring}>{title}</rect>')
        else:
            shape = (f'<polygon class="node logit" points="{x:.1f},{y - 7:.1f} {x + 7:.1f},{y:.1f} {x:.1f},{y + 7:.1f} '
                     f'{x - 7:.1f},{y:.1f}" fill="{"#7bc47f" if node.is_target_logit else "#b9dcb9"}"{ring}>{title}</polygon>'
                     f'<text class="logit-label" x="{x:.1f}" y="{y - 10:.1f}" text-anchor="middle" fill="#222">'
                     f'{svg_text(node.label, MAX_LABEL)}</text>')
        parts.append(shape)
    parts.append("</svg>")
    return "".join(parts)


# ----- paths --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GraphPath:
    nodes: tuple[str, ...]
    """Node ids from a token embedding to the logit."""
    score: float
    """The logit's probability × the product of the links' normalised weights (|weight| / the sum of |weights|
    into its target, over the links the saved graph kept): the share of the logit carried by this path."""
    sign: int
    """Product of the signs of the links' weights: +1 the path pushes the logit up, -1 down."""
    weights: tuple[float, ...]
    """The raw link weights (direct effects) along the path."""
    share: float = 0.0
    """The product of the normalised weights alone (``score`` / the logit's probability): the share of the logit's
    absolute input that flows along the path (what ``tinyinterp attribute`` prints as a percentage)."""


def _order(view: GraphView) -> list[str]:
    """Node ids, sources before targets (Kahn's algorithm); a cycle is a malformed graph."""
    indegree = {n: len(view.incoming.get(n, [])) for n in view.nodes}
    targets_of: dict[str, list[str]] = {}
    for link in view.links:
        targets_of.setdefault(link.source, []).append(link.target)
    ready = [n for n, d in indegree.items() if d == 0]
    order = []
    while ready:
        node = ready.pop()
        order.append(node)
        for t in targets_of.get(node, []):
            indegree[t] -= 1
            if indegree[t] == 0:
                ready.append(t)
    if len(order) != len(view.nodes):
        raise DataError(f"{view.slug or 'graph'}: its links form a cycle, so no paths can be ranked")
    return order


def strongest_paths(view: GraphView, target: GraphNode | None, k: int = 10) -> list[GraphPath]:
    """The ``k`` highest-scoring paths from any token embedding to ``target`` (exact: a dynamic programme over
    the DAG keeps the k best partial paths to the logit at every node; scores in log space)."""
    if target is None:
        return []
    totals = {t: sum(abs(l.weight) for l in ls) for t, ls in view.incoming.items()}
    outgoing: dict[str, list[GraphLink]] = {}
    for link in view.links:
        outgoing.setdefault(link.source, []).append(link)
    start = 0.0  # log of the share; the score multiplies it by the logit's probability
    best: dict[str, list[tuple[float, tuple[str, ...], tuple[float, ...]]]] = {target.node_id: [(start, (target.node_id,), ())]}
    for node in reversed(_order(view)):
        if node == target.node_id:
            continue
        candidates = []
        for link in outgoing.get(node, []):
            if link.target in best and link.weight != 0:
                step = math.log(abs(link.weight) / totals[link.target])
                candidates += [(s + step, (node, *p), (link.weight, *w)) for s, p, w in best[link.target]]
        if candidates:
            best[node] = heapq.nlargest(k, candidates)
    found = [c for n in view.of_kind("embedding") for c in best.get(n.node_id, [])]
    return [GraphPath(nodes, target.token_prob * math.exp(s), -1 if sum(w < 0 for w in ws) % 2 else 1, ws, math.exp(s))
            for s, nodes, ws in heapq.nlargest(k, found)]
