"""Activation records from the neuron index: windows, held-out split, activations matching the index."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.planted_neurons import NAME_NEURON, PLANT_LAYER, RANDOM_NEURON
from tinyinterp.errors import TinyinterpError
from tinyinterp.explain.records import RecordBuilder, RecordConfig, normalize


def test_records_match_the_index_and_hold_out_disjoint_top_ranks(planted):
    model, index = planted
    cfg = RecordConfig(n_explain=6, n_heldout_top=4, n_heldout_random=3, context_left=5, context_right=2)
    recs = RecordBuilder(model, index, cfg).build(PLANT_LAYER, [RANDOM_NEURON, 7])
    top_values = index.tensors["top_values"][PLANT_LAYER, RANDOM_NEURON].tolist()
    r = recs[RANDOM_NEURON]
    assert (len(r.explain), len(r.heldout_top), len(r.heldout_random)) == (6, 4, 3)
    # centres of explain records are ranks 0, 2, 4, ...; held-out top are ranks 1, 3, ...
    assert [max(x.activations) for x in r.explain] == pytest.approx(top_values[0::2][:6], abs=1e-5)
    assert [max(x.activations) for x in r.heldout_top] == pytest.approx(top_values[1::2][:4], abs=1e-5)
    assert {x.start for x in r.explain}.isdisjoint({x.start for x in r.heldout_top})
    assert all(len(x.tokens) == len(x.activations) == len(x.token_ids) <= 8 for x in r.explain + r.heldout)
    assert all(x.kind == "random" for x in r.heldout_random) and all(x.kind == "top" for x in r.heldout_top)
    assert r.max_activation == pytest.approx(top_values[0], abs=1e-5)
    assert max(normalize(r.explain[0].activations, r.max_activation)) == 10


def test_name_neuron_records_are_active_exactly_on_names(planted):
    from tests.support.story_world import NAMES

    model, index = planted
    recs = RecordBuilder(model, index, RecordConfig()).build(PLANT_LAYER, [NAME_NEURON])[NAME_NEURON]
    for rec in recs.explain + recs.heldout:
        for tok, act in zip(rec.tokens, rec.activations):
            assert (act > 0) == (tok.strip() in NAMES)


@pytest.mark.parametrize("source", ["pool", "quantile"])
def test_random_records_are_stable_per_neuron(planted, source):
    model, index = planted
    a = RecordBuilder(model, index, RecordConfig(seed=3, random_source=source)).build(0, [2, 5])
    b = RecordBuilder(model, index, RecordConfig(seed=3, random_source=source)).build(0, [5])
    assert [x.start for x in a[5].heldout_random] == [x.start for x in b[5].heldout_random]
    assert [x.activations for x in a[5].heldout_random] == [x.activations for x in b[5].heldout_random]
    assert len(a[5].heldout_random) == 5 and np.isfinite([v for x in a[2].heldout for v in x.activations]).all()
    if source == "pool":
        c = RecordBuilder(model, index, RecordConfig(seed=4, random_source=source)).build(0, [5])
        assert [x.start for x in c[5].heldout_random] != [x.start for x in a[5].heldout_random]


def test_random_records_use_the_index_quantile_examples(planted):
    model, index = planted
    builder = RecordBuilder(model, index, RecordConfig(n_heldout_random=5))
    expected = builder._quantile_positions(PLANT_LAYER, RANDOM_NEURON)
    assert len(expected) >= 3  # the random neuron's activations spread over several histogram bins
    quantiles = index.quantile_examples(PLANT_LAYER, RANDOM_NEURON, quantiles=[0.1, 0.3, 0.5, 0.7, 0.9], context=0)
    centres = {int(index.corpus.doc_offsets[ex.doc]) + ex.pos: ex.activation for ex in quantiles}
    recs = builder.build(PLANT_LAYER, [RANDOM_NEURON])[RANDOM_NEURON].heldout_random
    for pos in expected:  # each quantile example is the centre of one random record, same activation as stored
        rec = next(r for r in recs if r.start <= pos < r.start + len(r.tokens))
        assert rec.activations[pos - rec.start] == pytest.approx(centres[pos], abs=1e-5)


def test_bad_record_config_is_one_line_error():
    with pytest.raises(TinyinterpError, match="held-out"):
        RecordConfig(n_heldout_top=0, n_heldout_random=0)
