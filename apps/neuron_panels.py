"""The unit panels of the neuron and feature pages: explanation + score, activation statistics, top
examples, activation histogram, logit effects, quantile and most-negative examples, the unit on your own
text, and (neurons) find-by-word.

One code path for both pages: every panel takes a *units* object (:class:`apps.units.Neurons` or
:class:`apps.units.Features`) that says where its data comes from and what a unit is called, plus
``layer`` (always 0 for features) and ``unit`` (the neuron or feature id). Each panel reads through
:mod:`apps.guard` (a broken or older file costs that panel one line) and shows token strings only through
:mod:`apps.render` (escaped HTML). An index built before histograms / logit effects existed answers with
the library's own one-line "rebuild it" message. No ``st.dataframe`` and no iframe here: the neuron page's
search results stay its last table, and its only iframe is the circuitsvis view.
"""

from __future__ import annotations

import html
import math

import pandas as pd
import streamlit as st

from apps import guard, queries, render
from tinyinterp.errors import TinyinterpError

OWN_TEXT = 'One day, Lily saw a big dog in the park. "Hello, dog!" said Lily. The dog was happy.'


def _escaped(text: str) -> str:
    return html.escape(str(text), quote=True)


def explanation(units, layer: int, neuron: int) -> None:
    """The unit's explanation(s) and simulation score(s) (``tinyinterp explain``), one line each."""
    version = guard.attempt("explanations", units.explanations_version)
    if not version:
        if version is not None:
            st.caption(f"no explanation yet: run {render.md_code(units.explain_command())} (add `--explainer llm` for an LLM's)")
        return
    with guard.panel("explanations"):
        frame, notes = units.explanations()
        for note in notes:
            st.caption(render.md_text(note))
        rows = frame[(frame.layer == layer) & (frame.neuron == neuron)].sort_values("score", ascending=False)
        if rows.empty:
            st.caption(f"this {units.noun} has no explanation yet")
            return
        lines = []
        for r in rows.itertuples():
            score = "n/a" if r.score is None or math.isnan(r.score) else f"{r.score:.2f}"
            flag = " · some simulations flagged" if r.status == "flagged" else ""
            lines.append(f'<div class="explanation" style="margin:2px 0"><b>{_escaped(r.explainer)}</b> '
                         f'<span style="color:#555">score {score}{flag}</span>: {_escaped(r.explanation)}</div>')
        st.html("".join(lines))  # escaped: an explanation is an LLM's text (markdown would load images)


def _bin_label(lo: float, hi: float) -> str:
    def fmt(x: float) -> str:
        return "−∞" if x == -math.inf else "+∞" if x == math.inf else f"{x:.3g}"

    return f"[{fmt(lo)}, {fmt(hi)})"


def statistics(units, layer: int, neuron: int, what: str = "activation statistics") -> None:
    """max / mean / std / share of tokens active, from the index's running statistics."""
    with guard.panel(f"{what} ({units.index_file})"):
        stats = units.stats_frame()
        row = stats[(stats.layer == layer) & (stats.neuron == neuron)].iloc[0]
        cols = st.columns(4)
        for col, key in zip(cols, ("max", "mean", "std", "frac_active")):
            col.metric(key.replace("_", " "), f"{row[key]:.3f}")


def top_examples(units, layer: int, neuron: int, k: int, context: int, interactive=None) -> list[dict]:
    """The unit's top-k examples as escaped HTML (or ``interactive(examples)`` when given and chosen)."""
    st.subheader("Top examples")
    examples = guard.attempt("top examples", units.top_examples, layer, neuron, k, context)
    if examples is None:
        return []
    if not examples:
        st.info(f"this {units.noun} has no recorded activations")
    elif interactive is None or not interactive(examples):
        st.html(render.examples_html(examples))
    return examples


def histogram(units, layer: int, neuron: int) -> None:
    st.subheader("Activation distribution")
    with guard.panel(f"activation histogram ({units.index_file})"):
        hist = units.histogram(layer, neuron)
        used = hist[hist["count"] > 0]
        if used.empty:
            st.caption("no activations recorded")
            return
        shown = hist.loc[used.index.min(): used.index.max()].copy()  # the occupied range, empty bins inside kept
        shown["bin"] = [_bin_label(lo, hi) for lo, hi in zip(shown.lo, shown.hi)]
        import altair as alt

        chart = alt.Chart(shown).mark_bar().encode(
            x=alt.X("bin:N", sort=None, title="activation (bins: half-octaves of |x|)"),
            y=alt.Y("count:Q", scale=alt.Scale(type="symlog"), title="tokens (symlog)"),
            tooltip=["bin", "count"],
        )
        st.altair_chart(chart, height=220)
        total = int(hist["count"].sum())
        st.caption(f"{total:,} tokens · the middle bin holds |x| < 2⁻⁸")


def logit_effects(units, layer: int, neuron: int, n: int = 10) -> None:
    st.subheader("Logit effects (direct path)")
    with guard.panel(f"logit effects ({units.index_file})"):
        eff = units.logit_effects(layer, neuron, n)
        cols = st.columns(2)
        for col, name, colour in ((cols[0], "promoted", "#4a7bd0"), (cols[1], "suppressed", "#dc2828")):
            frame = eff[name]
            with col:
                st.caption(f"{name} tokens")
                st.html(_effect_bars(frame, colour))
        st.caption(units.logit_note)


def _effect_bars(frame: pd.DataFrame, colour: str) -> str:
    """Token (escaped, spaces visible) and its logit effect, a bar by |effect|; duplicates kept apart."""
    top = max((abs(float(v)) for v in frame.effect), default=0.0) or 1.0
    rows = []
    for token, value in zip(frame.token, frame.effect):
        shown = render.escape_token(str(token).replace(" ", "␣"))
        rows.append(
            f'<div class="logit" style="display:flex;align-items:center;gap:6px;margin:1px 0">'
            f'<span style="width:8em;text-align:right;font-family:monospace;overflow:hidden">{shown}</span>'
            f'<span style="background:{colour};height:0.9em;width:{60 * abs(float(value)) / top:.1f}%;min-width:1px"></span>'
            f'<span style="font-size:0.8em;color:#555">{float(value):+.3f}</span></div>')
    return f'<div class="logits" style="font-size:0.9em">{"".join(rows)}</div>'


def _labelled_examples(examples: list[dict], labels: list[str]) -> str:
    finite = [abs(a) for ex in examples for a in ex["activations"] if not math.isnan(a)]
    max_abs = max(finite) if finite else 0.0
    return "".join(
        f'<div class="dist-example" style="margin:4px 0"><div style="font-size:0.8em;color:#666">{_escaped(label)}</div>'
        f'{render.tokens_html(ex["token_strs"], ex["activations"], max_abs, ex["center"])}</div>'
        for ex, label in zip(examples, labels))


def quantile_examples(units, layer: int, neuron: int, context: int) -> None:
    st.subheader("Examples across the distribution")
    examples = guard.attempt("quantile examples", units.quantile_examples, layer, neuron, context)
    if examples:
        labels = [f"quantile {ex['quantile']:g} · act {ex['activation']:.3f} · a random token of the histogram bin "
                  f"spanning percentiles {100 * ex['share_range'][0]:.1f}–{100 * ex['share_range'][1]:.1f}"
                  for ex in examples]
        st.html(_labelled_examples(examples, labels))


def negative_examples(units, layer: int, neuron: int, context: int, k: int = 5) -> None:
    st.subheader("Most negative examples")
    examples = guard.attempt("most negative examples", units.negative_examples, layer, neuron, k, context)
    if examples is not None and not examples:
        st.caption("no negative activations recorded")
    elif examples:
        st.html(_labelled_examples(examples, [f"#{i} · act {ex['activation']:.3f}" for i, ex in enumerate(examples, 1)]))


def own_text(units, layer: int, neuron: int) -> None:
    st.subheader(f"Run the {units.noun} on your own text")
    text = st.text_area("Your text", OWN_TEXT, key=units.own_text_key, height=80)
    if not text.strip():
        return
    with guard.panel("model"):
        model = units.model()  # a run being trained: one line, the page goes on
        tokens, acts = units.on_text(text, layer, neuron)
        if tokens:
            st.html(render.tokens_html(tokens, acts))
            peak = max(range(len(acts)), key=lambda i: acts[i])
            st.caption(f"max {acts[peak]:.3f} on token {peak} of {len(tokens)} ({model.cfg.n_ctx} at most) · "
                       f"{render.COLOUR_LEGEND}")


def word_search(sel, jump_box) -> None:
    """Find neurons by word (several words: alternatives, case-insensitive), ranked by selectivity."""
    with st.expander("Find neurons by word", expanded=False):
        words = st.text_input("Neurons selective for…", key="word_query", placeholder="dog, puppy",
                              help="whole words or phrases, any case; separate alternatives with commas "
                                   "(they count as one word)")
        if not words.strip():
            return
        try:
            found, attrs = queries.find_neurons(sel.path, tuple(queries.split_words(words)))
        except TinyinterpError as e:
            st.warning(render.md_text(e))
            return
        except Exception as e:  # a broken index / weights: one line
            guard.show("find neurons by word", e)
            return
        st.caption(f"{attrs.get('n_occurrences', 0)} occurrences ({attrs.get('n_used', 0)} run) · score = "
                   "(mean on the word − mean elsewhere) / std elsewhere")
        st.dataframe(found[["layer", "neuron", "score", "mean_on_word", "mean_elsewhere"]], hide_index=True, height=180,
                     column_config={c: st.column_config.NumberColumn(format="%.3f")
                                    for c in ("score", "mean_on_word", "mean_elsewhere")})
        jump_box("Jump to a selective neuron", "jump_word", found,
                 lambda r: f"L{r.layer} N{r.neuron} · score {r.score:.2f}")


def all_panels(units, layer: int, neuron: int, context: int) -> None:
    """The panels under the top examples, in page order (own text last: the page's final element)."""
    left, right = st.columns([3, 2])
    with left:
        if units.corpus_missing():  # the top examples already said why, in one line: not twice more
            st.caption("quantile and most negative examples need the index's corpus (see the message above)")
        else:
            quantile_examples(units, layer, neuron, context)
            if units.signed:
                negative_examples(units, layer, neuron, context)
            else:
                st.caption(f"no most negative examples: a TopK {units.noun} is never negative")
    with right:
        histogram(units, layer, neuron)
        logit_effects(units, layer, neuron)
    own_text(units, layer, neuron)
