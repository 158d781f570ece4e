"""FLOPs per trained token — the one place the formula is written down (bench and sweeps import it).

The PaLM / Chinchilla convention, as ``bench/train_throughput.py`` states it::

    flops_per_token = 6 * N_matmul + 12 * n_layers * d_model * T

``N_matmul`` counts the weights of every matmul (qkv, out, fc_in, fc_out, unembed; not the embedding
lookups, biases or LayerNorms): forward 2 FLOPs per weight per token, backward twice that. The second
term is attention's QK^T and AV (forward 2 * 2 * T * d per layer, times 3 for forward + backward, no
causal discount), with T the training sequence length. A run's compute is ``tokens * flops_per_token``.

    >>> from tinyinterp.models.config import ModelConfig
    >>> flops_per_token(ModelConfig(d_model=64, n_layers=2, n_heads=4, d_vocab=2049), seq_len=128)
    1573248
"""

from __future__ import annotations


def matmul_params(cfg) -> int:
    """N_matmul: weights of every matmul (qkv + out, fc_in + fc_out per layer, and the unembedding)."""
    d, m = cfg.d_model, cfg.d_mlp
    return cfg.n_layers * (4 * d * d + 2 * d * m) + d * cfg.d_vocab


def flops_per_token(cfg, seq_len: int) -> int:
    """Training FLOPs (forward + backward) per token of a model with config ``cfg`` at sequence length ``seq_len``."""
    return 6 * matmul_params(cfg) + 12 * cfg.n_layers * cfg.d_model * seq_len
