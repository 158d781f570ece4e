"""Interventions on transcoder features in the REAL model, next to what the attribution graph predicts.

**Measured.** For each intervened layer ``l`` the real forward pass is hooked twice: at
``blocks.l.ln2.hook_normalized`` (the transcoder's input) the transcoder encodes the live MLP input,
giving the feature's real activation ``a`` there (after any upstream intervention); at
``blocks.l.hook_mlp_out`` the change of that feature's contribution, ``(a' − a) · W_dec[feature]``, is
added to the MLP's real output. ``a'`` is ``0`` (ablate), ``value · a`` (scale) or ``a + value``
(steer). Everything else — the real MLPs, attention, LayerNorms, later features — responds as the
model does. The chosen logits are read at the last position, raw and centred (minus the mean over
the vocabulary, the logit nodes' convention in circuit-tracer's graphs).

**Predicted** (:func:`predict_logit_change`): the graph's linear answer. An edge ``A[t, s]`` is the
direct effect of source ``s`` at its activation ``a_s``; in the linearised replacement model (frozen
attention, LayerNorm scales and error nodes; active features pass their pre-activation through with
slope 1) a change ``Δa_s`` moves the target by ``A[t, s] · Δa_s / a_s``. Intervened features are
clamped to their change, every other feature node follows its inputs, and the logit changes are
``Σ_s A[logit, s] · Δa_s / a_s`` — direct and indirect effects through every path of the graph.
Features the graph does not contain (inactive, or not selected) have no prediction (``None``).

    >>> result = intervene(model, transcoders, "Once upon a time", [FeatureIntervention(1, 42)], [tok])
    >>> result.measured, result.predicted        # change of the centred logits of `tok`
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from tinyinterp.attribution.nodes import GraphError, layout

log = logging.getLogger(__name__)

MODES = ("ablate", "scale", "steer")


@dataclass(frozen=True)
class FeatureIntervention:
    layer: int
    feature: int
    pos: int | None = None
    """Index into the prompt's tokens (the BOS is position 0, as in the graph); None: every position."""
    mode: str = "ablate"
    value: float = 0.0
    """scale: the factor; steer: the amount added to the activation; ablate: unused."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise GraphError(f"intervention mode must be one of {MODES}, got {self.mode!r}")

    def new_activation(self, a: torch.Tensor) -> torch.Tensor:
        if self.mode == "ablate":
            return torch.zeros_like(a)
        if self.mode == "scale":
            return a * self.value
        return a + self.value


@dataclass
class InterventionResult:
    tokens: list[int]
    """The prompt's token ids."""
    target_tokens: list[int]
    logits_before: torch.Tensor
    """(n_targets,) raw logits of the target tokens at the last position, without / with the interventions."""
    logits_after: torch.Tensor
    measured: torch.Tensor
    """(n_targets,) change of the centred logits (logit − mean logit) in the real model."""
    predicted: torch.Tensor | None = None
    """(n_targets,) the graph's linear prediction of ``measured`` (None without a graph)."""
    activations: list[dict] = field(default_factory=list)
    """Per intervention and position: layer, pos, feature, real activation before and the one set."""
    full_logits_before: torch.Tensor | None = field(default=None, repr=False)
    full_logits_after: torch.Tensor | None = field(default=None, repr=False)

    def top_tokens(self, k: int = 5, after: bool = True) -> list[tuple[int, float]]:
        """The k most likely next tokens (id, probability) with (or without) the interventions."""
        logits = self.full_logits_after if after else self.full_logits_before
        probs = torch.softmax(logits.double(), -1)
        top = probs.topk(min(k, len(probs)))
        return list(zip(top.indices.tolist(), top.values.tolist()))


def transcoder_for(transcoders, layer: int):
    """Layer ``layer``'s coder from a set: a mapping/sequence by layer, or an object with ``.coders``."""
    coders = getattr(transcoders, "coders", transcoders)
    try:
        return coders[layer]
    except (KeyError, IndexError):
        raise GraphError(f"the transcoder set has no transcoder of layer {layer}") from None


def _tokens(model, prompt) -> torch.Tensor:
    if isinstance(prompt, str):
        from tinyinterp.models.generation import prompt_ids

        if getattr(model, "tokenizer", None) is None:
            raise GraphError("the model has no tokenizer: pass the prompt as token ids")
        ids = prompt_ids(model.tokenizer, prompt)
    else:
        ids = [int(t) for t in torch.as_tensor(prompt).reshape(-1).tolist()]
    if len(ids) > model.cfg.n_ctx:
        raise GraphError(f"the prompt is {len(ids)} tokens; the model's context is {model.cfg.n_ctx}")
    if not ids:
        raise GraphError("the prompt is empty")
    return torch.tensor([ids], dtype=torch.long)


def _check(model, transcoders, interventions, n_pos: int, targets: list[int]) -> None:
    for iv in interventions:
        if not 0 <= iv.layer < model.cfg.n_layers:
            raise GraphError(f"intervention on layer {iv.layer}: the model has layers 0..{model.cfg.n_layers - 1}")
        width = transcoder_for(transcoders, iv.layer).cfg.d_sae
        if not 0 <= iv.feature < width:
            raise GraphError(f"feature {iv.feature} of layer {iv.layer}: its transcoder has features 0..{width - 1}")
        if iv.pos is not None and not 0 <= iv.pos < n_pos:
            raise GraphError(f"intervention at position {iv.pos}: the prompt has positions 0..{n_pos - 1}")
    for t in targets:
        if not 0 <= t < model.cfg.d_vocab:
            raise GraphError(f"target token {t} is not in the vocabulary (0..{model.cfg.d_vocab - 1})")


def _hooks(transcoders, interventions, record: list[dict]):
    by_layer: dict[int, list[FeatureIntervention]] = {}
    for iv in interventions:
        by_layer.setdefault(iv.layer, []).append(iv)
    hooks, inputs = [], {}

    def read_input(layer):
        def hook(x, hook):
            inputs[layer] = x
        return hook

    def add_delta(layer, ivs):
        coder = transcoder_for(transcoders, layer)

        def hook(out, hook):
            x = inputs.pop(layer)
            acts = coder.encode(x.to(coder.W_enc.dtype))  # (batch, pos, d_sae): the real, TopK'd activations
            delta = torch.zeros_like(out)
            for iv in ivs:
                positions = range(out.shape[1]) if iv.pos is None else [iv.pos]
                for p in positions:
                    a = acts[0, p, iv.feature]
                    new = iv.new_activation(a)
                    record.append({"layer": layer, "pos": p, "feature": iv.feature, "before": float(a),
                                   "after": float(new)})
                    delta[0, p] += ((new - a) * coder.W_dec[iv.feature]).to(out.dtype)
            return out + delta
        return hook

    for layer, ivs in by_layer.items():
        hooks.append((f"blocks.{layer}.ln2.hook_normalized", read_input(layer)))
        hooks.append((f"blocks.{layer}.hook_mlp_out", add_delta(layer, ivs)))
    return hooks


@torch.no_grad()
def intervene(model, transcoders, prompt, interventions: list[FeatureIntervention], target_tokens: list[int],
              graph=None) -> InterventionResult:
    """Run the real model on ``prompt`` with and without ``interventions`` (a "supernode" is several at once)."""
    tokens = _tokens(model, prompt)
    targets = [int(t) for t in target_tokens]
    if not targets:
        raise GraphError("no target tokens to report")
    _check(model, transcoders, interventions, tokens.shape[1], targets)
    device = next(model.parameters()).device
    tokens = tokens.to(device)
    before = model(tokens)[0, -1].double().cpu()
    record: list[dict] = []
    after = model.run_with_hooks(tokens, fwd_hooks=_hooks(transcoders, interventions, record))[0, -1].double().cpu()
    index = torch.tensor(targets)
    centred_before, centred_after = before - before.mean(), after - after.mean()
    measured = (centred_after - centred_before)[index]
    predicted = predict_logit_change(graph, interventions, targets) if graph is not None else None
    return InterventionResult(tokens[0].tolist(), targets, before[index], after[index], measured, predicted, record,
                              before, after)


def predict_logit_change(graph, interventions: list[FeatureIntervention], target_tokens: list[int] | None = None):
    """The graph's linear prediction of the centred-logit change (module docstring); None if a feature is absent.

    ``target_tokens`` must be among the graph's logit nodes (default: all of them, in the graph's order)."""
    lay = layout(graph)
    A = graph.adjacency_matrix.double()
    feats = graph.active_features[graph.selected_features]  # (n_features, 3) [layer, pos, feature]
    acts = graph.activation_values[graph.selected_features].double()
    logit_ids = [int(t) for t in graph.logit_tokens.tolist()]
    targets = logit_ids if target_tokens is None else [int(t) for t in target_tokens]
    missing = [t for t in targets if t not in logit_ids]
    if missing:
        raise GraphError(f"token(s) {missing} are not logit nodes of the graph (it has {logit_ids})")
    n = lay.n_features
    fixed = torch.zeros(n, dtype=torch.bool)
    change = torch.zeros(n, dtype=torch.float64)
    for iv in interventions:
        hit = (feats[:, 0] == iv.layer) & (feats[:, 2] == iv.feature)
        if iv.pos is not None:
            hit &= feats[:, 1] == iv.pos
        if not hit.any():
            log.info("feature %d of layer %d (pos %s) is not a node of the graph: no prediction", iv.feature, iv.layer,
                     iv.pos)
            return None
        for i in hit.nonzero(as_tuple=True)[0].tolist():
            fixed[i] = True
            change[i] = float(iv.new_activation(acts[i]) - acts[i])
    gain = torch.where(acts != 0, 1.0 / acts, torch.zeros_like(acts))  # Δ(effect) per unit Δa_s: A[t, s] / a_s
    G = A[:n, :n] * gain[None, :]
    M = torch.eye(n, dtype=torch.float64) - G
    clamped = fixed.nonzero(as_tuple=True)[0]
    M[clamped] = 0
    M[clamped, clamped] = 1.0  # clamped features: Δa = the intervention's change, whatever their inputs do
    delta = torch.linalg.solve(M, torch.where(fixed, change, torch.zeros_like(change)))
    rows = torch.tensor([lay.logit_start + logit_ids.index(t) for t in targets])
    return (A[rows, :n] * gain[None, :]) @ delta
