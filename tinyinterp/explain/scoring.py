"""Score an explanation: correlation between simulated and true activations on held-out records.

``score`` is the Pearson correlation over *all* held-out tokens pooled (top and random records
together: the paper's "top-and-random" score); ``score_top`` / ``score_random`` pool only one kind,
and ``per_record`` is the correlation inside each record. Flagged simulations (no prediction) are left
out of every pool and counted in ``n_flagged``; they are never read as zeros. A correlation is
``None`` when the true activations are constant (nothing to explain), and ``0.0`` when the true
activations vary but the prediction is constant (the explanation predicts nothing).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from tinyinterp.explain.records import ActivationRecord
from tinyinterp.explain.simulator import Simulation


def correlation(true: list[float] | np.ndarray, predicted: list[float] | np.ndarray) -> float | None:
    """Pearson r, with the conventions of the module docstring for constant inputs."""
    t, p = np.asarray(true, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    if t.shape != p.shape:
        raise ValueError(f"true and predicted activations differ in length ({t.size} vs {p.size})")
    if t.size < 2 or np.ptp(t) == 0:
        return None
    if np.ptp(p) == 0:
        return 0.0
    with np.errstate(all="ignore"):
        r = float(np.corrcoef(t, p)[0, 1])
    return r if np.isfinite(r) else None  # a spread too small for float64 (e.g. 1e-300): nothing to explain


@dataclass
class Scores:
    score: float | None
    score_top: float | None
    score_random: float | None
    per_record: list[float | None]
    """One entry per held-out record (None where flagged or constant)."""
    n_tokens: int
    """Tokens in the pooled score (flagged records excluded)."""
    n_flagged: int

    def as_dict(self) -> dict:
        return asdict(self)


def score_simulations(records: list[ActivationRecord], simulations: list[Simulation]) -> Scores:
    """Pool the usable (record, simulation) pairs and correlate."""
    if len(records) != len(simulations):
        raise ValueError("one simulation per record is required")
    pools: dict[str, tuple[list[float], list[float]]] = {"all": ([], []), "top": ([], []), "random": ([], [])}
    per_record: list[float | None] = []
    n_flagged = 0
    for rec, sim in zip(records, simulations):
        if sim.flagged or sim.predicted is None:
            n_flagged += 1
            per_record.append(None)
            continue
        if len(sim.predicted) != len(rec.activations):
            raise ValueError(f"a simulation has {len(sim.predicted)} values for {len(rec.activations)} tokens")
        per_record.append(correlation(rec.activations, sim.predicted))
        for key in ("all", rec.kind):
            pools[key][0].extend(rec.activations)
            pools[key][1].extend(sim.predicted)
    return Scores(score=correlation(*pools["all"]), score_top=correlation(*pools["top"]),
                  score_random=correlation(*pools["random"]), per_record=per_record,
                  n_tokens=len(pools["all"][0]), n_flagged=n_flagged)
