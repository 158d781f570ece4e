"""A hand-built two-layer GPT-Neo with one planted name circuit, and its transcoders.

Vocabulary: token 0 is a filler's BOS-like start, ``NAME`` a name, ``QUERY`` the last token, the rest
fillers. Token embeddings are orthonormal mean-zero directions (so LayerNorm's centring is the
identity on them) and the unembedding is tied. The circuit:

* layer 0's MLP has one neuron that fires on the name's embedding and writes a direction ``u``; the
  layer-0 transcoder has the same unit as feature ``FEATURE`` (plus random distractor features);
* layer 1's head 0 attends from the query to the name (query reads the query token, key reads the
  name's embedding: the pattern does not depend on ``u``) and copies ``u`` into the name's
  embedding direction, which the tied unembedding reads as the name's logit.

So the name's logit at the last position comes from: name embedding → feature → head 1.0 → logit.
Everything else has small random weights (head 1.1, layer-0 attention, layer 1's MLP) so that the
graph has other nodes and edges to rank below the planted path.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

NAME, QUERY, VOCAB = 1, 2, 10
FEATURE = 3
D_MODEL, N_HEADS = 16, 2


@dataclass
class PlantedCircuit:
    model: object
    transcoders: object
    tokens: torch.Tensor
    name_pos: int
    u: torch.Tensor


def _directions(n: int, d: int, g: torch.Generator) -> torch.Tensor:
    """``n`` orthonormal vectors of ``R^d`` with zero mean (n < d)."""
    x = torch.randn(d, n, generator=g)
    x = x - x.mean(0, keepdim=True)
    q, _ = torch.linalg.qr(x)
    q = q - q.mean(0, keepdim=True)  # already mean-zero up to rounding
    return q.T.contiguous()  # (n, d)


def build_planted_circuit(seed: int = 0, noise: float = 0.02) -> PlantedCircuit:
    from tinyinterp.attribution import TranscoderSet
    from tinyinterp.dictionaries import DictionaryConfig, SparseCoder, transcoder_hooks
    from tinyinterp.models.transformer import HookedTransformer
    from tinyinterp.models.zoo import preset_config

    g = torch.Generator().manual_seed(seed)
    cfg = preset_config("test-neo", d_vocab=VOCAB, d_model=D_MODEL, n_heads=N_HEADS, n_layers=2)
    model = HookedTransformer(cfg).eval()
    dirs = _directions(VOCAB + 1, D_MODEL, g)
    b, u = dirs[:VOCAB], dirs[VOCAB]
    d, dh = D_MODEL, cfg.d_head
    with torch.no_grad():
        for name, p in model.named_parameters():  # small random everything, then the planted weights
            if name.endswith(".w"):
                p.fill_(1.0)
            elif name.endswith(".b") or name.endswith("bias") or "pos_embed" in name:
                p.zero_()
            else:
                p.copy_(torch.randn(p.shape, generator=g) * noise)
        model.embed.weight.copy_(b)  # tied: the unembedding reads the same directions
        a0, m0 = model.blocks[0].attn, model.blocks[0].mlp
        m0.fc_in.weight[0] = 2.0 * b[NAME]  # the name neuron: LN'd name embedding has norm 4 -> pre 8 - 2
        m0.fc_in.bias[0] = -2.0
        m0.fc_out.weight[:, 0] = u
        m0.fc_out.weight[:, 1:] = 0
        a1 = model.blocks[1].attn
        h = 0
        a1.qkv.weight[h * dh:(h + 1) * dh] = 0
        a1.qkv.weight[d + h * dh:d + (h + 1) * dh] = 0
        a1.qkv.weight[2 * d + h * dh:2 * d + (h + 1) * dh] = 0
        a1.qkv.weight[h * dh] = 2.0 * b[QUERY]  # query: the query token
        a1.qkv.weight[d + h * dh] = 2.0 * b[NAME]  # key: the name's embedding
        a1.qkv.weight[2 * d + h * dh] = u  # value: what the name feature wrote
        a1.out.weight[:, h * dh:(h + 1) * dh] = 0
        a1.out.weight[:, h * dh] = b[NAME]  # output: the name's (tied) unembedding direction
        del a0

    coders = []
    for layer in range(2):
        coder = SparseCoder(DictionaryConfig("transcoder", *transcoder_hooks(layer), d, d, 8, 2))
        coder.reset_parameters(g)
        with torch.no_grad():
            coder.b_enc.fill_(-1.0)  # distractors fire on a few tokens only
            if layer == 0:
                coder.W_enc[:, FEATURE] = 2.0 * b[NAME]
                coder.b_enc[FEATURE] = -2.0
                coder.W_dec[FEATURE] = u
                others = [f for f in range(8) if f != FEATURE]
                coder.W_enc[:, others] -= torch.outer(b[NAME], b[NAME] @ coder.W_enc[:, others])  # blind to the name
        coder.requires_grad_(False)
        coders.append(coder)
    tokens = torch.tensor([0, 4, 5, NAME, 6, 7, 8, QUERY])
    return PlantedCircuit(model, TranscoderSet(coders, None, "planted"), tokens, 3, u)


def top_path(graph, target_node: int) -> list[int]:
    """The path from a token node to ``target_node`` with the largest product of normalised |edge|
    weights (each row of |A| divided by its sum, circuit-tracer's normalisation); a DAG dynamic
    programme over the nodes in reverse layer order."""
    A = graph.adjacency_matrix.abs().double()
    A = A / A.sum(1, keepdim=True).clamp_min(1e-30)
    n = graph.n_nodes
    best = torch.zeros(n, dtype=torch.float64)
    nxt = torch.full((n,), -1, dtype=torch.long)
    best[target_node] = 1.0
    layer = torch.full((n,), -1, dtype=torch.long)  # sources only feed later layers: process by layer, top first
    layer[:graph.n_selected] = graph.active_features[graph.selected_features, 0]
    for node in range(graph.error_offset, graph.token_offset):
        layer[node] = (node - graph.error_offset) // graph.n_pos
    order = sorted(range(graph.logit_offset), key=lambda i: -int(layer[i]))
    for s in order:
        scores = A[:, s] * best
        t = int(scores.argmax())
        if scores[t] > 0:
            best[s], nxt[s] = scores[t], t
    start = max(range(graph.token_offset, graph.logit_offset), key=lambda i: float(best[i]))
    path = [start]
    while path[-1] != target_node:
        path.append(int(nxt[path[-1]]))
    return path
