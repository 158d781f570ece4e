"""The SAELens half of ``make compat``: train a tiny tinyinterp run, train an SAE on it with SAELens's runner,
evaluate it with SAELens's evaluator on our hook names, reload it from disk, load a dictionary our own trainer saved
with SAELens's ``SAE.load_from_disk`` (equal reconstructions), run the README's SAELens block,
and write an export + reference logits for the transformers-4 check (scripts/compat_tf4.py).

Runs in the compat venv (sae-lens and its TransformerLens 3.x), offline: the text comes from the local
TinyStories file, never the hub. Prints one line per stage with its time, and the SAE's L0 and explained
variance. Exits non-zero (with the failing check) on any mismatch.

    .venv-compat/bin/python scripts/compat_saelens.py --work compat-out
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

HOOK = "blocks.1.hook_resid_post"
ROOT = Path(__file__).resolve().parent.parent


def _stage(name: str, start: float) -> float:
    now = time.perf_counter()
    print(f"[compat] {name}: {now - start:.1f}s", flush=True)
    return now


def train_tiny_run(run: Path, text: Path, steps: int) -> None:
    """Our own trainer, tiny GPT-Neo preset, on the local TinyStories text."""
    cmd = [sys.executable, "-m", "training.train", "--out", str(run), "--data", str(text), "--preset", "test-neo",
           "--vocab-size", "2000", "--max-steps", str(steps), "--batch-size", "16", "--seq-len", "64",
           "--warmup-steps", "10", "--lr", "3e-3", "--eval-every", str(steps), "--no-progress", "--threads", "1"]
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def train_and_evaluate_sae(model, stories, out: Path) -> dict[str, float]:
    from sae_lens import (
        SAE, LanguageModelSAERunnerConfig, LanguageModelSAETrainingRunner, LoggingConfig, StandardTrainingSAEConfig,
        run_evals,
    )
    from sae_lens.evals import EvalConfig
    from sae_lens.training.activation_scaler import ActivationScaler

    cfg = LanguageModelSAERunnerConfig(
        sae=StandardTrainingSAEConfig(d_in=model.cfg.d_model, d_sae=4 * model.cfg.d_model, l1_coefficient=1.0),
        hook_name=HOOK, is_dataset_tokenized=False, streaming=False, context_size=64, prepend_bos=True,
        training_tokens=8192, train_batch_size_tokens=256, store_batch_size_prompts=8, n_batches_in_buffer=4,
        lr=3e-3, logger=LoggingConfig(log_to_wandb=False), output_path=str(out), device="cpu", seed=0,
        exclude_special_tokens=True, model_from_pretrained_kwargs={},
    )
    runner = LanguageModelSAETrainingRunner(cfg, override_model=model, override_dataset=stories)
    initial = runner.sae.W_enc.detach().clone()
    sae = runner.run()
    assert (sae.W_enc - initial).abs().max() > 1e-3, "the SAE did not train (encoder unchanged)"
    print(f"[compat] SAE trained {cfg.training_tokens // cfg.train_batch_size_tokens} steps on {cfg.training_tokens} tokens "
          f"(max encoder change {(sae.W_enc - initial).abs().max():.3f})", flush=True)
    metrics, _ = run_evals(
        sae, runner.activations_store, model, ActivationScaler(),
        EvalConfig(batch_size_prompts=8, n_eval_reconstruction_batches=2, n_eval_sparsity_variance_batches=4,
                   compute_kl=True, compute_ce_loss=True, compute_sparsity_metrics=True, compute_variance_metrics=True),
        exclude_special_tokens=True,
    )
    result = {
        "l0": float(metrics["sparsity"]["l0"]),
        "explained_variance": float(metrics["reconstruction_quality"]["explained_variance"]),
        "ce_loss_score": float(metrics["model_performance_preservation"]["ce_loss_score"]),
        "ce_loss_without_sae": float(metrics["model_performance_preservation"]["ce_loss_without_sae"]),
        "ce_loss_with_sae": float(metrics["model_performance_preservation"]["ce_loss_with_sae"]),
    }
    assert 0 < result["l0"] <= cfg.sae.d_sae, f"L0 {result['l0']} outside (0, d_sae]"
    assert all(v == v and abs(v) < 1e6 for v in result.values()), f"non-finite SAE metrics: {result}"

    reloaded = SAE.load_from_disk(str(out))  # what a user gets back from the saved folder
    assert torch.allclose(reloaded.W_enc, sae.W_enc) and torch.allclose(reloaded.W_dec, sae.W_dec), "reloaded SAE differs"
    _, cache = model.run_with_cache("Once upon a time, Lily saw a dog.", names_filter=[HOOK])
    acts = cache[HOOK]
    with torch.no_grad():
        assert torch.allclose(reloaded.encode(acts), sae.encode(acts), atol=1e-6), "reloaded SAE encodes differently"
    return result


def check_our_folders_in_saelens(model, run: Path, out: Path) -> str:
    """SAELens's ``SAE.load_from_disk`` reads a folder our trainer wrote and reconstructs as we do.

    Our SAE is trained briefly by our own trainer (so the folded normalisation and a non-zero ``b_dec``
    are in the file), saved by ``tinyinterp.dictionaries.formats``, loaded by SAELens, and both encode and
    reconstruct the model's activations. SAELens 6 has no TopK transcoder (its ``transcoder`` classes are
    ReLU / JumpReLU), so our ``topk_transcoder`` folder must be refused by name, never read as another kind.
    """
    from sae_lens import SAE

    from tinyinterp.data.corpus import TokenizedCorpus
    from tinyinterp.dictionaries import DictionaryConfig, SparseCoder, TrainConfig, load_dictionary, transcoder_hooks
    from tinyinterp.dictionaries.formats import save_dictionary
    from tinyinterp.dictionaries.training import train_dictionary

    d = model.cfg.d_model
    cfg = DictionaryConfig("sae", HOOK, HOOK, d, d, 4 * d, 8, model_name=str(run))
    corpus = TokenizedCorpus.open(run / "data" / "train")
    train_dictionary(model, corpus, cfg, TrainConfig(tokens=8192, batch_tokens=512, buffer_tokens=2048), out / "ours-sae",
                     progress=False)
    ours = load_dictionary(out / "ours-sae")
    theirs = SAE.load_from_disk(str(out / "ours-sae"))
    assert type(theirs).__name__ == "TopKSAE", f"SAELens read our SAE as {type(theirs).__name__}"
    _, cache = model.run_with_cache("Once upon a time, Lily saw a big dog in the park. She was happy.", names_filter=[HOOK])
    acts = cache[HOOK]
    with torch.no_grad():
        feature_diff = float((theirs.encode(acts) - ours.encode(acts)).abs().max())
        recon_diff = float((theirs.decode(theirs.encode(acts)) - ours(acts)).abs().max())
    scale = float(acts.abs().max())
    assert recon_diff <= 1e-5 * max(scale, 1.0) and feature_diff <= 1e-5 * max(scale, 1.0), \
        f"SAELens reconstructs our SAE differently: max |diff| features {feature_diff:.3g}, reconstruction {recon_diff:.3g}"
    hook_in, hook_out = transcoder_hooks(1)
    transcoder = SparseCoder(DictionaryConfig("transcoder", hook_in, hook_out, d, d, 4 * d, 8))
    transcoder.reset_parameters(torch.Generator().manual_seed(0))
    save_dictionary(transcoder, out / "ours-transcoder")
    try:
        SAE.load_from_disk(str(out / "ours-transcoder"))
    except Exception as e:  # SAELens's own refusal of an architecture it does not have
        refusal = f"{type(e).__name__}: {str(e).splitlines()[0][:100]}"
    else:
        raise AssertionError("SAELens loaded our topk_transcoder folder as some other architecture")
    return (f"SAE.load_from_disk read our TopK SAE ({type(theirs).__name__}, d_sae {theirs.cfg.d_sae}, k {theirs.cfg.k}): "
            f"max |diff| vs ours on {acts.shape[1]} tokens: features {feature_diff:.3g}, reconstruction {recon_diff:.3g} "
            f"(activations up to {scale:.3g}); our topk_transcoder refused by name ({refusal})")


def write_tf4_reference(run: Path, work: Path) -> None:
    """An export plus our logits on fixed tokens, for the transformers-4.x venv to load and compare."""
    import tinyinterp
    from safetensors.torch import save_file
    from tinyinterp.hf.export import export_run

    export_run(run, work / "hf")
    model = tinyinterp.load(run)
    text = "Once upon a time, there was a little girl named Lily. She loved to play outside with her dog."
    tokens = torch.tensor([model.tokenizer.encode(text)])
    with torch.no_grad():
        save_file({"tokens": tokens, "logits": model(tokens).contiguous()}, str(work / "reference.safetensors"))
    (work / "reference.txt").write_text(text, encoding="utf-8")


def readme_block(readme: Path, heading: str = "### SAELens") -> str:
    """The first ```python block under ``heading`` in the README."""
    text = readme.read_text(encoding="utf-8")
    section = text[text.index(heading):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, f"{readme}: no python block under {heading!r}"
    return match.group(1)


def run_readme_block(run: Path, work: Path) -> str:
    """Run the README's SAELens block as written, in a folder where ``runs/my`` is the tiny run."""
    cwd = work / "readme"
    (cwd / "runs").mkdir(parents=True, exist_ok=True)
    (cwd / "runs" / "my").symlink_to(run.resolve())
    (cwd / "snippet.py").write_text(readme_block(ROOT / "README.md"), encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "snippet.py"], cwd=cwd, env=env, check=True, capture_output=True, text=True)
    assert (cwd / "saes" / "my" / "cfg.json").is_file(), "README block did not save its SAE"
    return done.stdout.strip().splitlines()[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="empty work folder (run, SAE, export)")
    parser.add_argument("--steps", type=int, default=150, help="training steps of the tiny run")
    args = parser.parse_args(argv)
    from importlib.metadata import version

    import datasets

    import tinyinterp
    from tinyinterp.data.corpus_readers import iter_documents
    from tinyinterp.data.paths import data_dir

    versions = ", ".join(f"{p} {version(p)}" for p in ("sae-lens", "transformer-lens", "transformers", "torch"))
    print(f"[compat] {versions}", flush=True)
    torch.set_num_threads(1)
    text = data_dir() / "tinystories" / "train-v1-hf-head.txt"
    work = args.work.resolve()
    start = time.perf_counter()
    run = work / "run"
    train_tiny_run(run, text, args.steps)
    start = _stage(f"trained tiny run ({args.steps} steps, test-neo)", start)

    model = tinyinterp.load(run)
    stories = datasets.Dataset.from_dict({"text": list(iter_documents(text, max_docs=2000))})
    metrics = train_and_evaluate_sae(model, stories, work / "sae")
    start = _stage("SAELens runner + evaluator + SAE.load_from_disk", start)
    print("[compat] SAE on " + HOOK + ": " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()), flush=True)

    line = check_our_folders_in_saelens(model, run, work / "dictionaries")
    start = _stage("SAELens reads tinyinterp's dictionary folders", start)
    print(f"[compat] {line}", flush=True)

    write_tf4_reference(run, work)
    start = _stage("export + reference logits for transformers 4.x", start)
    shape = run_readme_block(run, work)
    _stage(f"README SAELens block ran as written (printed {shape})", start)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
