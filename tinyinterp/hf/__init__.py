"""Hugging Face checkpoints in and out of tinyinterp.

* :mod:`~tinyinterp.hf.family` — what an architecture family is (plus the import/export error types);
  :mod:`~tinyinterp.hf.gpt_neo`, :mod:`~tinyinterp.hf.gpt2`, :mod:`~tinyinterp.hf.legacy` — one adapter
  each (config fields, ``config.json`` mapping, block weights both ways); :mod:`~tinyinterp.hf.families`
  — picks one;
* :mod:`~tinyinterp.hf.convert` — whole configs and state dicts, both directions;
* :mod:`~tinyinterp.hf.weights` — reads weight files of an untrusted folder (headers checked first);
* :mod:`~tinyinterp.hf.native_import` — a folder → our ``HookedTransformer``;
* :mod:`~tinyinterp.hf.bridge` — a folder or hub name → TransformerBridge (architectures we do not import);
* :mod:`~tinyinterp.hf.export` — ``tinyinterp export``;
* :mod:`~tinyinterp.hf.hub` — everything that talks to the Hugging Face Hub (reachability, cache, download).

Deliberately imports nothing: ``tinyinterp.models.config`` imports :mod:`tinyinterp.hf.families`.
"""
