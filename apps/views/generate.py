"""Generate page: a prompt in, sampled stories out, optionally coloured by one MLP neuron's activation.

Sampling uses :func:`tinyinterp.models.generation.generate` with a fixed seed, so the same settings give the
same stories (and a cached answer). Generated text is shown escaped: whatever the model writes stays text.
"""

from __future__ import annotations

import streamlit as st

from apps import guard, loaders, render, run_picker
from tinyinterp.errors import TinyinterpError

DEFAULT_PROMPT = "Once upon a time, there was a little girl named Lily. One day,"


def _settings(cfg) -> dict:
    with st.form("generate_form"):
        prompt = st.text_area("Prompt", DEFAULT_PROMPT, key="gen_prompt", height=90)
        c = st.columns(5)
        n = c[0].number_input("stories", 1, 8, 2, key="gen_n")
        max_new = c[1].number_input("max new tokens", 1, cfg.n_ctx, min(80, cfg.n_ctx), key="gen_max_new")
        temperature = c[2].slider("temperature", 0.0, 2.0, 0.7, 0.05, key="gen_temperature", help="0 = greedy")
        top_k = c[3].number_input("top-k (0 = off)", 0, cfg.d_vocab, 0, key="gen_top_k")
        seed = c[4].number_input("seed", 0, 2**31 - 1, 0, key="gen_seed")
        st.form_submit_button("Generate", type="primary")
    return dict(prompt=prompt, n=int(n), max_new_tokens=int(max_new), temperature=float(temperature),
                top_k=int(top_k) or None, seed=int(seed))


def _neuron_choice(cfg) -> tuple[int, int] | None:
    c = st.columns([2, 1, 1])
    if not c[0].toggle("colour the stories by a neuron's activation", key="gen_colour"):
        return None
    layer = c[1].selectbox("layer", list(range(cfg.n_layers)), key="gen_layer")
    neuron = c[2].number_input("neuron", 0, cfg.d_mlp - 1, 0, key="gen_neuron")
    return int(layer), int(neuron)


sel = run_picker.require_selection()
st.title("Generate")
model = guard.attempt("model", loaders.model_for, sel.path)
if model is None:
    st.stop()
cfg = model.cfg
settings = _settings(cfg)
colour_by = _neuron_choice(cfg)
if not settings["prompt"].strip():
    st.warning("enter a prompt")
    st.stop()
try:
    stories = loaders.generate_texts(sel.path, **settings)
except TinyinterpError as e:
    st.error(render.md_text(e))
    st.stop()
for i, story in enumerate(stories, 1):
    st.subheader(f"Story {i}")
    if colour_by is None:
        st.html(render.story_html(settings["prompt"], story))
    else:
        layer, neuron = colour_by
        tokens, acts = loaders.neuron_activations(sel.path, settings["prompt"] + story, layer, neuron)
        st.html(render.tokens_html(tokens, acts))
        st.caption(f"coloured by L{layer} N{neuron}: {render.COLOUR_LEGEND} (hover a token for its value)")
