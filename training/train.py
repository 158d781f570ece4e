"""Entry point: ``python -m training.train`` (also ``tinyinterp train``); the same command runs under torchrun.

    python -m training.train --out runs/demo --preset tinystories-1m --max-minutes 5
    torchrun --nproc_per_node=2 -m training.train --out runs/demo --preset test-tiny --max-steps 20

Steps: (1) join a distributed group when ``RANK``/``WORLD_SIZE`` are set (gloo on CPU, NCCL on
CUDA); (2) build the tokenizer (restricted GPT-Neo BPE, K = ``--vocab-size``) and the tokenized
corpus into ``<out>/data/`` unless they are already there (rank 0 builds, the others wait);
(3) train with :class:`training.trainer.Trainer`, resuming from ``<out>/checkpoints/`` when a
checkpoint exists. On resume the saved training settings are reused and only the options given
on the command line override them (e.g. a larger ``--max-steps`` to train longer).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

import torch

from tinyinterp.runs import rundir
from tinyinterp.cli.support import run_cli
from tinyinterp.models.devices import resolve_device
from tinyinterp.errors import TinyinterpError
from tinyinterp.runs.layout import (
    CONFIG_FILE,
    STATE_FILE,
    TOKENIZER_FILE,
    TRAIN_SPLIT,
    VAL_SPLIT,
    run_data_dir,
)
from tinyinterp.runs.lock import lock_run_dir
from training.config import DTYPES, TrainConfig
from training.trainer import DistContext, Trainer, TrainResult, find_resume_point

log = logging.getLogger(__name__)

# (flag, TrainConfig field, type, help). Defaults come from TrainConfig so --help and the code agree.
_OPTIONS: list[tuple[str, str, Any, str]] = [
    ("--preset", "preset", str, "model shape from the zoo, e.g. tinystories-1m, tinystories-3m, test-tiny"),
    ("--arch", "arch", str, "architecture: gpt-neo (the tinystories-* presets, as the official checkpoints), gpt2, or legacy (default: the preset's)"),
    ("--val-data", "val_data", str, "held-out validation .txt/.jsonl file (default: a 5%% hash split of --data, or the local validation file with the default data)"),
    ("--vocab-size", "vocab_size", int, "K: keep the K most frequent GPT-Neo BPE tokens of the corpus, plus <|endoftext|>"),
    ("--base-tokenizer", "base_tokenizer", str, "base BPE tokenizer.json or hub name (default: local GPT-2 tokenizer.json, else EleutherAI/gpt-neo-125M)"),
    ("--tokenizer", "tokenizer", str, "use this existing tokenizer.json instead of building one"),
    ("--batch-size", "batch_size", int, "GLOBAL sequences per optimizer step (summed over --grad-accum and DDP ranks)"),
    ("--seq-len", "seq_len", int, "tokens per training sequence (at most the preset's context)"),
    ("--grad-accum", "grad_accum", int, "gradient accumulation micro-steps per optimizer step"),
    ("--lr", "lr", float, "peak learning rate (AdamW)"),
    ("--min-lr", "min_lr", float, "final learning rate of the cosine decay (default lr/10)"),
    ("--warmup-steps", "warmup_steps", int, "linear warm-up steps"),
    ("--max-steps", "max_steps", int, "optimizer steps to train (also the cosine horizon)"),
    ("--max-minutes", "max_minutes", float, "time budget; stops at the first eval/checkpoint boundary after it"),
    ("--calibration-steps", "calibration_steps", int, "with only --max-minutes: steps timed to fix the cosine horizon"),
    ("--weight-decay", "weight_decay", float, "AdamW weight decay on Linear weight matrices"),
    ("--grad-clip", "grad_clip", float, "clip the global gradient norm to this (0 = off)"),
    ("--eval-every", "eval_every", int, "validation loss every this many steps"),
    ("--eval-batches", "eval_batches", int, "validation batches (of --batch-size sequences) per evaluation"),
    ("--log-every", "log_every", int, "metrics.jsonl train record every this many steps"),
    ("--ckpt-every", "ckpt_every", int, "checkpoint every this many steps (and at the end)"),
    ("--keep-last", "keep_last", int, "checkpoints to keep on disk"),
    ("--snapshots-per-octave", "snapshots_per_octave", int, "weights-only snapshots at log-spaced steps round(2^(i/N)), kept for `tinyinterp analyze emergence` (0 = off)"),
    ("--seed", "seed", int, "seed of the init and of the batch order"),
    ("--device", "device", str, "cpu, cuda, cuda:1, ... or auto"),
    ("--dtype", "dtype", str, f"one of {', '.join(DTYPES)}; auto = bf16 autocast on CUDA, float32 on CPU"),
    ("--threads", "threads", int, "torch CPU threads (default: torch's choice)"),
]


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``tinyinterp train`` / ``python -m training.train`` (shared by both)."""
    defaults = TrainConfig(max_steps=1)
    parser.add_argument("--out", required=True, type=Path, help="run directory to create or resume (e.g. runs/demo)")
    parser.add_argument("--data", nargs="+", default=None, metavar="PATH",
                        help="training text: .txt (<|endoftext|>-separated) / .jsonl files, folders, or a hub dataset "
                             "(default: $TINYINTERP_DATA/tinystories files, else roneneldan/TinyStories)")
    for flag, name, kind, text in _OPTIONS:
        default = getattr(defaults, name) if name != "max_steps" else None
        suffix = "" if "default" in text else f" (default: {default})"
        parser.add_argument(flag, dest=name, type=kind, default=None, help=text + suffix)
    parser.add_argument("--compile", dest="compile", action="store_const", const=True, default=None,
                        help="torch.compile the model (off by default)")
    parser.add_argument("--resume", action="store_true",
                        help="require a checkpoint in --out to resume from (resuming is automatic when one exists)")
    parser.add_argument("--no-progress", action="store_true", help="hide the tqdm progress bars")


def config_from_args(args: argparse.Namespace, saved: dict[str, Any] | None = None) -> TrainConfig:
    """Saved settings (when resuming) overridden by the options given on the command line."""
    values = dict(saved or {})
    given = {name: getattr(args, name) for _, name, _, _ in _OPTIONS if getattr(args, name) is not None}
    if args.data is not None:
        given["data"] = args.data
    if args.compile is not None:
        given["compile"] = True
    if saved and "max_minutes" in given and "max_steps" not in given:
        values["max_steps"] = None  # a new time budget replaces the old step count
    values.update(given)
    try:
        return TrainConfig.from_dict(values)
    except ValueError as e:
        raise TinyinterpError(str(e)) from None


def dist_context_from_env() -> DistContext:
    """torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; a plain ``python`` run is rank 0 of 1."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return DistContext()
    return DistContext(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0")))


def _saved_train_config(checkpoint: Path | None) -> dict[str, Any] | None:
    if checkpoint is None:
        return None
    state = rundir.read_json(checkpoint / STATE_FILE)
    saved = state.get("train_config") if isinstance(state, dict) else None
    if saved is not None and not isinstance(saved, dict):
        raise TinyinterpError(f"{checkpoint / STATE_FILE}: 'train_config' is not an object; delete {checkpoint} to resume from an older checkpoint")
    return saved


def prepare_data(cfg: TrainConfig, out: Path, dist_ctx: DistContext, progress: bool = True):
    """Tokenizer + (train, val) corpora in ``out/data``; built by rank 0 once, then reused."""
    import torch.distributed as dist

    from tinyinterp.data.corpus import TokenizedCorpus, default_sources, iter_documents, prepare_corpus
    from tinyinterp.data.paths import data_dir, gpt2_tokenizer_file
    from tinyinterp.data.tokenizer import DEFAULT_BASE, Tokenizer

    data_out = run_data_dir(out)
    tok_path = data_out / TOKENIZER_FILE
    if cfg.data:
        train_src, val_src = cfg.data, cfg.val_data
    else:
        sources = default_sources()
        train_src, val_src = sources.train, cfg.val_data or sources.val
    if dist_ctx.is_main:
        if cfg.tokenizer:
            tokenizer = Tokenizer.load(cfg.tokenizer)
        elif tok_path.is_file():
            tokenizer = Tokenizer.load(tok_path)
        else:
            base = cfg.base_tokenizer
            if base is None:
                base = str(gpt2_tokenizer_file()) if data_dir(required=False) and gpt2_tokenizer_file().is_file() else DEFAULT_BASE
            log.info("building the restricted BPE (K=%d) from %s", cfg.vocab_size, base)
            tokenizer = Tokenizer.restricted_bpe(base, iter_documents(train_src), k=cfg.vocab_size, progress=progress)
        tokenizer.save(tok_path)
        train, val = prepare_corpus(train_src, tokenizer, data_out, val_source=val_src, progress=progress)
    if dist_ctx.enabled:
        dist.barrier()
    if not dist_ctx.is_main:
        tokenizer = Tokenizer.load(tok_path)
        train, val = TokenizedCorpus.open(data_out / TRAIN_SPLIT), TokenizedCorpus.open(data_out / VAL_SPLIT)
    for corpus in (train, val):
        corpus.check_tokenizer(tokenizer)
    return tokenizer, train, val


def run_training(cfg: TrainConfig, out: Path, dist_ctx: DistContext | None = None, progress: bool = True) -> TrainResult:
    """Prepare the data and train into ``out`` (resuming when it holds a checkpoint)."""
    dist_ctx = dist_ctx or DistContext()
    _check_choices(cfg)
    out = Path(out)
    # One writer per run dir: rank 0 holds the lock from data preparation to the last file written.
    with lock_run_dir(out) if dist_ctx.is_main else contextlib.nullcontext():
        return _prepare_and_train(cfg, out, dist_ctx, progress, find_resume_point(out, dist_ctx))


def _check_choices(cfg: TrainConfig) -> None:
    """Refuse an unknown preset/architecture or an unusable --device before spending time on the data."""
    from tinyinterp.models.zoo import ARCHITECTURES, PRESETS

    if cfg.preset not in PRESETS:
        raise TinyinterpError(f"--preset {cfg.preset!r} is unknown; choose one of: {', '.join(PRESETS)}")
    if cfg.arch is not None and cfg.arch not in ARCHITECTURES:
        raise TinyinterpError(f"--arch {cfg.arch!r} is unknown; choose one of: {', '.join(ARCHITECTURES)}")
    resolve_device(cfg.device)


def _prepare_and_train(cfg: TrainConfig, out: Path, dist_ctx: DistContext, progress: bool,
                       last: Path | None) -> TrainResult:
    """Build the data and train, the run's lock held by the caller; ``last``: the checkpoint to resume from."""
    from tinyinterp.models.zoo import preset_config

    tokenizer, train, val = prepare_data(cfg, out, dist_ctx, progress)
    if last is not None and (last / CONFIG_FILE).is_file():
        # Resume the architecture the run was started with (presets may have changed since, e.g. the
        # tinystories-* presets became GPT-Neo in 0.2): the checkpoint's config is the truth.
        model_cfg = rundir.read_model_config(last)
    else:
        model_cfg = preset_config(cfg.preset, d_vocab=tokenizer.vocab_size, arch=cfg.arch)
    extra = {
        "tokenizer": tokenizer.describe(),
        "data": {"train": train.source, "val": val.source, "train_tokens": train.n_tokens, "train_docs": train.n_docs,
                 "val_tokens": val.n_tokens},
    }
    trainer = Trainer(cfg, model_cfg, train, tokenizer.eot_id, out, val_data=val, tokenizer=tokenizer,
                      extra_config=extra, dist_ctx=dist_ctx, progress=progress, resume_from=last)
    return trainer.fit(hold_lock=False)


def train_from_args(args: argparse.Namespace) -> int:
    """``tinyinterp train``: run, print a one-paragraph summary, return the exit code."""
    dist_ctx = dist_context_from_env()
    if dist_ctx.enabled:
        import torch.distributed as dist

        backend = "nccl" if torch.cuda.is_available() and (args.device or "auto") != "cpu" else "gloo"
        dist.init_process_group(backend=backend)
        if not dist_ctx.is_main:
            logging.getLogger().setLevel(logging.WARNING)
    try:
        out = Path(args.out)
        if not out.is_dir():  # a new run: nothing to resume, so check the options before creating the folder
            if args.resume:
                raise TinyinterpError(f"--resume: {out} has no checkpoint to resume from; drop --resume to start a new run")
            _check_choices(config_from_args(args))
        # The lock is taken once and the newest checkpoint looked up once, for the settings and the resume.
        with lock_run_dir(out) if dist_ctx.is_main else contextlib.nullcontext():
            last = find_resume_point(out, dist_ctx)
            saved = _saved_train_config(last)
            if args.resume and saved is None:
                raise TinyinterpError(f"--resume: {out} has no checkpoint to resume from; drop --resume to start a new run")
            cfg = config_from_args(args, saved)
            _check_choices(cfg)
            result = _prepare_and_train(cfg, out, dist_ctx, not args.no_progress, last)
    finally:
        if dist_ctx.enabled:
            import torch.distributed as dist

            dist.destroy_process_group()
    if dist_ctx.is_main:
        val = f"{result.final_val_loss:.4f}" if result.final_val_loss is not None else "n/a"
        print(f"trained {result.steps} steps ({result.tokens:,} tokens, {result.elapsed_s:.0f} s, stopped by {result.stopped_by}); "
              f"final val loss {val} nats/token; run dir: {result.run_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n\n")[0])
    add_train_arguments(parser)
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    return run_cli(lambda: train_from_args(args))


if __name__ == "__main__":
    sys.exit(main())
