"""Real tiny dictionaries for the app tests: trained by the real trainer, evaluated by ``sae eval``'s code.

:func:`add_dictionaries` trains, on a run's model and corpus, a TopK SAE on ``blocks.0.hook_resid_post``
and a transcoder of block 1's MLP saved as a set member (``transcoders/layer_01``: a name with one
``/``, as COMMON.md fixes it), each with :class:`tinyinterp.dictionaries.training.DictionaryTrainer`
(logging every few steps so ``train_log.jsonl`` has a curve) and
:func:`tinyinterp.dictionaries.evaluation.evaluate_dictionary` (``eval.json`` beside the weights).
Each then gets its feature index (``build_feature_index``, the neuron index's pass over the features) and
the SAE's first :data:`EXPLAINED` features baseline explanations (``tinyinterp.explain``'s runner, the
neurons' format in ``<dictionary>/explanations``). About a second each on ``test-tiny``.
"""

from __future__ import annotations

from pathlib import Path

SAE_NAME = "sae-blocks.0.hook_resid_post-w64-k4"
TRANSCODER_NAME = "transcoders/layer_01"
NAMES = (SAE_NAME, TRANSCODER_NAME)
EXPLAINED = 4


def add_dictionaries(run: Path, corpus, tokens: int = 8192, log_every: int = 4) -> dict[str, Path]:
    """Train and evaluate the two dictionaries of :data:`NAMES` into ``run/analysis/dictionaries/``."""
    from tinyinterp.runs import rundir
    from tinyinterp.dictionaries import DictionaryConfig, TrainConfig, transcoder_hooks
    from tinyinterp.dictionaries.activations import ActivationStream
    from tinyinterp.dictionaries.evaluation import evaluate_dictionary, save_evaluation
    from tinyinterp.dictionaries.training import DictionaryTrainer
    from tinyinterp.runs.layout import dictionaries_dir

    model = rundir.load_run(run).eval()
    d = model.cfg.d_model
    hook_in, hook_out = transcoder_hooks(1)
    configs = {
        SAE_NAME: DictionaryConfig("sae", "blocks.0.hook_resid_post", "blocks.0.hook_resid_post", d, d, 64, 4),
        TRANSCODER_NAME: DictionaryConfig("transcoder", hook_in, hook_out, d, d, 96, 6),
    }
    train = TrainConfig(tokens=tokens, batch_tokens=256, seq_len=48, model_batch=8, buffer_tokens=1024,
                        checkpoint_every=10_000, dead_after_tokens=2048)
    from tinyinterp.explain import ExplainRunConfig, ExplainRunner
    from tinyinterp.interp import NeuronIndexConfig, build_feature_index
    from tinyinterp.runs.layout import feature_explanations_dir

    out = {}
    for name, cfg in configs.items():
        folder = dictionaries_dir(run) / name
        stream = ActivationStream(model, corpus, cfg, train.seq_len, train.model_batch, train.buffer_tokens, seed=0)
        coder = DictionaryTrainer(cfg, train, folder, stream).run(progress=False, log_every=log_every)
        save_evaluation(evaluate_dictionary(model, coder, corpus, n_tokens=1024, seq_len=48, progress=False), folder)
        index = build_feature_index(model, corpus, folder, NeuronIndexConfig(k=12, seq_len=64), progress=False)
        if name == SAE_NAME:
            explain = ExplainRunConfig(explainer="baseline", neurons=[(0, f) for f in range(EXPLAINED)])
            ExplainRunner(model, index, explain, feature_explanations_dir(folder)).run()
        out[name] = folder
    return out
