"""Emergence page: how neuron roles and head classes appear during training (``tinyinterp analyze emergence``).

Reads ``RUN/analysis/emergence/`` through :class:`tinyinterp.interp.emergence.EmergenceResult`: curves
against training tokens (share of role neurons and mean type purity, head class counts, attention distance
and previous-token attention on the fixed prompts, validation loss), then a step slider that steps one
neuron (its top tokens and max activation at each saved state) or one head (its class and its pattern on a
fixed prompt) through training. Token strings are escaped (HTML) or drawn as chart text (Vega).
"""

from __future__ import annotations

import html
from collections import Counter

import pandas as pd
import streamlit as st

from apps import file_readers, guard, head_panels, loaders, queries, render, run_picker
from tinyinterp.runs import rundir


def _curves(frame: pd.DataFrame, columns: list[str], title: str) -> None:
    import altair as alt

    present = [c for c in columns if c in frame and frame[c].notna().any()]
    if not present:
        return
    long = frame.melt(id_vars=["step", "tokens"], value_vars=present, var_name="series").dropna(subset=["value"])
    long["tokens"] = long["tokens"].clip(lower=1)
    chart = alt.Chart(long, title=title).mark_line(point=True).encode(
        x=alt.X("tokens:Q", scale=alt.Scale(type="log"), title="training tokens"),
        y=alt.Y("value:Q", title=None), color="series:N", tooltip=["step", "tokens", "series", "value"])
    st.altair_chart(chart, height=240)


def _token_list(tokenizer, ids: list[int], n: int = 6) -> str:
    counts = Counter(int(t) for t in ids if int(t) >= 0).most_common(n)
    return " ".join(
        f'<span style="font-family:monospace;background:#eef;padding:0 2px">'
        f'{render.escape_token(tokenizer.token_str(t).replace(" ", "␣"))}</span>×{c}' for t, c in counts)


def _neuron_through_training(sel, n_layers: int, step: int) -> None:
    st.subheader("Step a neuron through training")
    config = guard.attempt(rundir.CONFIG_FILE, loaders.run_config, sel.path)
    cfg = (config.get("model") if isinstance(config, dict) else None) or {}
    d_mlp = file_readers.plain_int(cfg.get("d_mlp"), 1, 2**31) if isinstance(cfg, dict) else None
    d_mlp = d_mlp or 1
    c1, c2, _ = st.columns([1, 1, 3])
    layer = c1.selectbox("Layer", list(range(n_layers)), key="em_neuron_layer")
    neuron = c2.number_input("Neuron", 0, max(d_mlp - 1, 0), 0, 1, key="em_neuron")
    with guard.panel("neuron track (step_*/neurons/index.safetensors)"):
        track = queries.neuron_track(sel.path, int(layer), int(neuron))
        tokenizer = queries.run_tokenizer(sel.path)
        rows = []
        for r in track.itertuples():
            mark = ' style="background:#fff4cc"' if int(r.step) == step else ""
            rows.append(f"<tr{mark}><td>{int(r.step)}</td><td>{int(r.tokens):,}</td><td>{r.max_activation:.3f}</td>"
                        f"<td>{_token_list(tokenizer, r.top_tokens)}</td></tr>")
        st.html('<table class="neuron-track" style="font-size:0.85em"><tr><th>step</th><th>tokens</th>'
                f'<th>max act</th><th>top tokens (count in top-k)</th></tr>{"".join(rows)}</table>')
        st.line_chart(track, x="tokens", y="max_activation", height=160, x_label="training tokens")


def _prompt_tokens(sel, prompt: str, length: int) -> list[str]:
    """The fixed prompt's token strings, cut to the stored pattern's length (positions if it is shorter)."""
    try:
        tokenizer = queries.run_tokenizer(sel.path)
        tokens = [tokenizer.token_str(i) for i in tokenizer.encode(prompt)]
    except Exception:  # labels only: positions will do
        tokens = []
    # the analysis cut each prompt to the model's window: the first `length` tokens are the pattern's
    return tokens[:length] if len(tokens) >= length else [f"#{i}" for i in range(length)]


def _head_through_training(sel, n_layers: int, n_heads: int, step: int) -> None:
    st.subheader("Step a head through training")
    c1, c2, c3 = st.columns([1, 1, 3])
    layer = int(c1.selectbox("Layer", list(range(n_layers)), key="em_head_layer"))
    head = int(c2.selectbox("Head", list(range(n_heads)), key="em_head"))
    prompts = queries.emergence_prompts()
    with guard.panel("head track (step_*/summary.json)"):
        track = queries.head_track(sel.path, layer, head)
        now = track[track.step == step]
        if not now.empty:
            cols = st.columns(3)
            cols[0].metric(f"class at step {step}", render.md_text(now.iloc[0].get("head_class")))  # values are Markdown
            for col, key in zip(cols[1:], ("distance_explained", "content_explained")):
                value = now.iloc[0].get(key)
                col.metric(key.replace("_", " "), "n/a" if value is None or pd.isna(value) else f"{value:.2f}")
        st.dataframe(track, hide_index=True, height=200)
    choice = c3.selectbox("Fixed prompt", list(range(len(prompts))), key="em_prompt",
                          format_func=lambda i: prompts[i][:60] + "…")
    with guard.panel(f"patterns at step {step} (patterns.safetensors)"):
        patterns = queries.step_patterns(sel.path, step)
        key = f"prompt_{choice}"
        if key not in patterns:
            st.caption(f"no pattern for prompt {choice} at this step")
            return
        pattern = patterns[key][layer, head]
        st.caption(f"L{layer}H{head} at step {step} on: {html.escape(prompts[choice])}")
        head_panels._pattern_chart(_prompt_tokens(sel, prompts[choice], pattern.shape[-1])[:48], pattern)


sel = run_picker.require_selection()
st.title("Emergence")
if not queries.has_emergence(sel.path):
    st.info(f"No emergence analysis for {render.md_code(sel.name)} yet: train with `--snapshots-per-octave 2`, "
            f"then run {render.md_code(f'tinyinterp analyze emergence {sel.path}')}.")
    st.stop()
result = guard.attempt("emergence analysis", queries.emergence, sel.path)
if result is None:
    st.stop()
frame = queries.emergence_frame(sel.path)
st.caption(f"{len(frame)} saved states from step {int(frame.step.min())} to {int(frame.step.max())} "
           f"({int(frame.tokens.max()):,} tokens)")
left, right = st.columns(2)
with left:
    _curves(frame, ["role_share", "mean_type_purity"], "Neurons: role share and mean type purity")
    _curves(frame, ["prompt_mean_distance", "prompt_prev_token"], "Attention on the fixed prompts")
with right:
    _curves(frame, ["local", "semantic", "mixed"], "Head classes (count)")
    _curves(frame, ["val_loss", "train_loss"], "Loss")
steps = [int(s) for s in frame.step]
step = int(st.select_slider("Step", options=steps, value=steps[-1], key="emergence_step"))
first = result.rows[0]["heads"]
n_layers, n_heads = len(first), len(first[0]) if first else 0
neuron_col, head_col = st.columns(2)
with neuron_col:
    _neuron_through_training(sel, n_layers, step)
with head_col:
    _head_through_training(sel, n_layers, n_heads, step)
st.caption("Saved states: log-spaced snapshots, kept checkpoints and the final weights; each analysed on the same "
           "documents (`tinyinterp analyze emergence`).")
