"""Sparse dictionaries on a model's hooks: TopK SAEs and transcoders — train, evaluate, save/load.

    from tinyinterp.dictionaries import DictionaryConfig, TrainConfig, train_dictionary, load_dictionary
    coder = load_dictionary("runs/demo/analysis/dictionaries/sae-blocks.1.hook_resid_post-w512-k16")
    features = coder.encode(cache["blocks.1.hook_resid_post"])      # (batch, pos, d_sae)

See docs/dictionaries.md.
"""

from tinyinterp.dictionaries.config import DictionaryConfig, DictionaryError, TrainConfig, transcoder_hooks
from tinyinterp.dictionaries.formats import check_against_model, load_dictionary, save_dictionary
from tinyinterp.dictionaries.sparse_coder import SparseCoder

__all__ = ["DictionaryConfig", "DictionaryError", "SparseCoder", "TrainConfig", "check_against_model",
           "load_dictionary", "save_dictionary", "transcoder_hooks"]
