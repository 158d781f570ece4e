"""Scaling sweeps: ``run`` (a shard of the grid), ``list`` (one command per run), ``summarize`` (merge).

    tinyinterp sweep run training/scaling_tiny.yaml --out runs/scaling-tiny --shard 0/2
    tinyinterp sweep run training/scaling_tiny.yaml --out runs/scaling-tiny --shard 1/2
    tinyinterp sweep summarize runs/scaling-tiny
    tinyinterp sweep list training/scaling_tiny.yaml --out runs/scaling-tiny   # for a Slurm array:
    #   sbatch --array=1-$N --wrap 'eval "$(tinyinterp sweep list SPEC --out OUT | sed -n ${SLURM_ARRAY_TASK_ID}p)"'

Every run is an ordinary run directory ``<out>/<name>/`` (resumable: rerunning continues from its last
checkpoint, and a finished run is skipped), so any job launcher can run the grid: one shard per process,
one run per array task, or ``torchrun --nproc_per_node=N -m training.scaling_sweep run SPEC --only NAME`` for DDP
(``python -m training.scaling_sweep`` is this module's command line; ``python -m training.sweep run|list|summarize``
of earlier releases still works).
The tokenizer and corpus are built once into ``<out>/data`` (under a file lock, so shards started
together wait for one builder). ``summarize`` writes ``<out>/sweep_summary.json`` (kind ``scaling``, the
schema of :mod:`tinyinterp.scaling.summary`) from whatever has finished; a run whose ``config.json`` is
unreadable or malformed stops it with one line naming the file; ``analyses/scaling.py`` fits and plots it.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tinyinterp.runs import rundir
from tinyinterp.io.atomic import atomic_write_json
from tinyinterp.cli.support import run_cli
from tinyinterp.errors import RunDirError, TinyinterpError
from tinyinterp.runs.layout import CONFIG_FILE, SWEEP_SUMMARY_FILE
from tinyinterp.scaling.summary import SCALING, write_sweep_summary
from training.scaling_spec import SPEC_FILE, RunPoint, ScalingSpec, parse_shard, planned_flops, select

log = logging.getLogger(__name__)

SUMMARY_FILE = SWEEP_SUMMARY_FILE
_COMMAND = "python -m training.scaling_sweep"
LOCKS_DIR = ".locks"


@contextlib.contextmanager
def _flock(path: Path, blocking: bool = True):
    """An exclusive flock on ``path``; yields False (without waiting) when non-blocking and already held."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def save_spec(spec: ScalingSpec, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / SPEC_FILE
    atomic_write_json(path, spec.to_dict())
    return path


def _finished(run_dir: Path, plan) -> dict[str, Any] | None:
    """The saved result of a run that already trained with exactly this plan, else None."""
    if not rundir.is_run_dir(run_dir):
        return None
    config = rundir.read_json(run_dir / CONFIG_FILE)
    if not isinstance(config, dict):
        return None
    same = config.get("train") == plan.train.to_dict() and (config.get("scaling") or {}).get("point") == plan.point.to_dict()
    return config["result"] if same and "result" in config else None


def run_points(spec: ScalingSpec, out: Path, points: list[RunPoint], progress: bool = True, dist_ctx=None) -> list[str]:
    """Train ``points`` one after another into ``out``; returns the names that are finished afterwards."""
    from training.train import prepare_data
    from training.trainer import DistContext, Trainer

    dist_ctx = dist_ctx or DistContext()
    out = Path(out)
    base = spec.base_train()
    with _flock(out / LOCKS_DIR / "data.lock") if dist_ctx.is_main else contextlib.nullcontext():
        tokenizer, train, val = prepare_data(base, out, dist_ctx=dist_ctx, progress=progress)
    data = {"train": train.source, "val": val.source, "train_tokens": train.n_tokens, "val_tokens": val.n_tokens}
    done = []
    for point in points:
        plan = spec.plan(point, tokenizer.vocab_size)
        run_dir = out / point.name
        if _finished(run_dir, plan) is not None:
            log.info("%s: already finished, skipping", point.name)
            done.append(point.name)
            continue
        # A run another process is training right now is left to it (DDP ranks train together, unlocked).
        lock = _flock(out / LOCKS_DIR / f"{point.name}.lock", blocking=False) if not dist_ctx.enabled else contextlib.nullcontext(True)
        with lock as held:
            if not held:
                log.info("%s: being trained by another process, skipping", point.name)
                continue
            log.info("%s: training %d steps (%.3g tokens, %.3g FLOPs)", point.name, plan.train.max_steps, plan.tokens, plan.flops)
            extra = {"tokenizer": tokenizer.describe(), "data": data, "scaling": plan.record()}
            Trainer(plan.train, plan.model, train, tokenizer.eot_id, run_dir, val_data=val, tokenizer=tokenizer,
                    extra_config=extra, dist_ctx=dist_ctx, progress=progress).fit()
            done.append(point.name)
    return done


def summarize(out: Path) -> dict[str, Any]:
    """Merge every finished run under ``out`` into ``<out>/sweep_summary.json`` (atomically) and return it."""
    out = Path(out)
    if not out.is_dir():
        raise TinyinterpError(f"summarize {out}: no such sweep folder; run `tinyinterp sweep run SPEC --out {out}` first")
    runs, pending = [], []
    for config_path in sorted(out.glob(f"*/{CONFIG_FILE}")):
        entry = _summary_entry(config_path)
        if entry == "not scaling":
            continue
        if entry is None:
            pending.append(config_path.parent.name)
        else:
            runs.append(entry)
    spec_path = out / SPEC_FILE
    if spec_path.is_file():
        spec = ScalingSpec.from_dict(rundir.read_json(spec_path), source=str(spec_path))
        names = {r["name"] for r in runs}
        pending = [p.name for p in spec.points() if p.name not in names]
    return write_sweep_summary(out, SCALING, runs, pending)


def _summary_entry(config_path: Path) -> dict[str, Any] | str | None:
    """The summary row of one run (None: not finished; "not scaling": another kind of run dir).

    A config.json that cannot be read or lacks what a finished scaling run records is one line naming the
    file: the summary would otherwise leave the run out without a word.
    """
    redo = "fix or delete that run folder (rerunning the sweep retrains it)"
    try:
        config = rundir.read_json(config_path)
    except RunDirError as e:
        raise TinyinterpError(f"summarize: {e}; {redo}") from None
    if not isinstance(config, dict):
        raise TinyinterpError(f"summarize: {config_path}: not a JSON object; {redo}")
    if "scaling" not in config:
        return "not scaling"
    if "result" not in config:
        return None
    scaling, result = config["scaling"], config["result"]
    try:
        flops = result["tokens"] * scaling["flops_per_token"]
        train_tokens = (config.get("data") or {}).get("train_tokens")
        return {
            "name": config_path.parent.name, **scaling["point"],
            **{k: scaling[k] for k in ("flops_per_token", "n_params", "n_params_non_embedding", "n_matmul")},
            **result, "flops": flops, "train_tokens": train_tokens,
            "epochs": result["tokens"] / train_tokens if train_tokens else None,
        }
    except (KeyError, TypeError, AttributeError, ZeroDivisionError) as e:
        raise TinyinterpError(f"summarize: {config_path}: malformed 'scaling'/'result' section "
                              f"({type(e).__name__}: {e}); {redo}") from None


def list_commands(spec: ScalingSpec, out: Path) -> list[str]:
    """One shell command per run (the spec is saved into ``out`` so the commands stand alone)."""
    saved = save_spec(spec, out)
    py = f"{_COMMAND} run"
    return [f"{py} {saved} --out {out} --only {p.name}" for p in spec.points()]


def run_parallel(spec_file: Path, out: Path, k: int, threads: int | None) -> int:
    """Run k shards as k child processes (``--shard i/k``); returns the worst exit code."""
    procs = []
    for i in range(k):
        cmd = [sys.executable, "-m", "training.scaling_sweep", "run", str(spec_file), "--out", str(out), "--shard", f"{i}/{k}",
               "--no-progress"]
        log_path = out / "logs" / f"shard-{i}-of-{k}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
        with open(log_path, "a") as f:
            procs.append((subprocess.Popen(cmd + (["--threads", str(threads)] if threads else []), stdout=f,
                                           stderr=subprocess.STDOUT, env=env), log_path))
        log.info("shard %d/%d started (log: %s)", i, k, log_path)
    codes = [p.wait() for p, _ in procs]
    for (_, path), code in zip(procs, codes):
        if code:
            log.error("%s: exit code %d", path, code)
    return max(codes)


# ----- command line -------------------------------------------------------------------------------

_TRAIN_FLAGS = [  # (flag, TrainConfig field, type, help): the shared settings worth overriding per sweep
    ("--data", "data", str, "training text files/folders (default: the shared TinyStories files)"),
    ("--val-data", "val_data", str, "held-out validation file"),
    ("--tokenizer", "tokenizer", str, "use this tokenizer.json instead of building the restricted BPE"),
    ("--vocab-size", "vocab_size", int, "K of the restricted BPE"),
    ("--batch-size", "batch_size", int, "global sequences per step"),
    ("--seq-len", "seq_len", int, "tokens per sequence (also the model context unless the spec sets n_ctx)"),
    ("--eval-batches", "eval_batches", int, "validation batches per evaluation"),
    ("--device", "device", str, "cpu, cuda, ... or auto"),
    ("--dtype", "dtype", str, "auto, float32 or bfloat16"),
]


def _spec_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", nargs="?", type=Path, help="YAML spec (see training/scaling_tiny.yaml); or give the grid with the flags below")
    p.add_argument("--out", required=True, type=Path, help="sweep folder: one run directory per grid point, data/ shared")
    g = p.add_argument_group("grid (replaces the spec's grid when any axis is given)")
    g.add_argument("--d-model", nargs="+", type=int, help="widths")
    g.add_argument("--n-layers", nargs="+", type=int, help="depths")
    g.add_argument("--n-heads", nargs="+", type=int, help="attention heads")
    g.add_argument("--lrs", nargs="+", type=float, help="peak learning rates")
    g.add_argument("--seeds", nargs="+", type=int, help="seeds")
    b = g.add_mutually_exclusive_group()
    b.add_argument("--tokens", nargs="+", type=float, help="budget per run in training tokens (replaces the spec's budget)")
    b.add_argument("--flops", nargs="+", type=float, help="budget per run in training FLOPs (replaces the spec's budget)")
    g.add_argument("--evals-per-run", type=int, help="validation points along each run (default 8)")
    t = p.add_argument_group("training settings shared by every run (override the spec's train:)")
    for flag, name, kind, text in _TRAIN_FLAGS:
        t.add_argument(flag, dest=name, type=kind, nargs="+" if name == "data" else None, help=text)


def spec_from_args(args: argparse.Namespace) -> ScalingSpec:
    data = ScalingSpec.load(args.spec).to_dict() if args.spec else {"grid": [{}]}
    axes = {"d_model": args.d_model, "n_layers": args.n_layers, "n_heads": args.n_heads, "lr": args.lrs, "seed": args.seeds}
    axes = {k: v for k, v in axes.items() if v}
    if axes:
        data["grid"] = [axes]
    if args.tokens or args.flops:
        data["budget"] = {"tokens": args.tokens} if args.tokens else {"flops": args.flops}
    if "budget" not in data:
        raise TinyinterpError("no budget: give a spec with budget:, or --tokens / --flops")
    if args.evals_per_run:
        data["evals_per_run"] = args.evals_per_run
    data["train"] = {**data.get("train", {}), **{name: getattr(args, name) for _, name, _, _ in _TRAIN_FLAGS
                                                  if getattr(args, name) is not None}}
    return ScalingSpec.from_dict(data, source=str(args.spec or "command line"))


def _dist_from_env():
    from training.train import dist_context_from_env

    ctx = dist_context_from_env()
    if ctx.enabled:
        import torch
        import torch.distributed as dist

        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return ctx


def _cmd_run(args) -> int:
    spec = spec_from_args(args)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.parallel:
        if args.shard or args.only:
            raise TinyinterpError("--parallel starts its own shards; drop --shard/--only")
        code = run_parallel(save_spec(spec, args.out), args.out, args.parallel, args.threads)
        summary = summarize(args.out)
    else:
        points = select(spec.points(), parse_shard(args.shard or "0/1"), args.only, cost=planned_flops(spec))
        dist_ctx = _dist_from_env()
        try:
            if dist_ctx.is_main:
                save_spec(spec, args.out)
            run_points(spec, args.out, points, progress=not args.no_progress, dist_ctx=dist_ctx)
        finally:
            if dist_ctx.enabled:
                import torch.distributed as dist

                dist.destroy_process_group()
        if not dist_ctx.is_main:
            return 0
        code, summary = 0, summarize(args.out)
    _print_summary(summary, args.out)
    return 2 if code else 0


def _print_summary(summary: dict[str, Any], out: Path) -> None:
    for r in sorted(summary["runs"], key=lambda r: r["flops"]):
        repeat = f"  ({r['epochs']:.1f} epochs: repeats data)" if (r.get("epochs") or 0) > 1 else ""
        print(f"{r['name']:>40}: {r['n_params']:>9,} params, {r['flops']:.3g} FLOPs, val loss {r['final_val_loss']:.4f}{repeat}")
    print(f"{len(summary['runs'])} finished, {len(summary['pending'])} pending; best: {summary['best']} "
          f"(summary: {Path(out) / SUMMARY_FILE})")


def _cmd_list(args) -> int:
    from training.scaling_spec import total_flops

    spec = spec_from_args(args)
    for line in list_commands(spec, args.out):
        print(line)
    # FLOPs use d_vocab = K + 1 (restricted BPE + <|endoftext|>): an estimate when --tokenizer is given
    print(f"# {len(spec.points())} runs, {total_flops(spec):.3g} training FLOPs in total", file=sys.stderr)
    return 0


def _cmd_summarize(args) -> int:
    _print_summary(summarize(args.out), args.out)
    return 0


def add_commands(sub) -> None:
    """Add ``run``, ``list`` and ``summarize`` to an argparse sub-parsers object (here and in ``tinyinterp sweep``)."""
    run = sub.add_parser("run", help="train the runs of the grid (one shard of it), skipping finished ones",
                         description="Train the runs of a scaling grid (or one shard of it) into OUT; finished runs are skipped, "
                                     "interrupted ones resume. Example: tinyinterp sweep run training/scaling_tiny.yaml "
                                     "--out runs/scaling-tiny --shard 0/2")
    _spec_arguments(run)
    run.add_argument("--shard", help="i/n: train only part i of n (0-based; parts balanced by planned FLOPs), e.g. $SLURM_ARRAY_TASK_ID/8")
    run.add_argument("--only", nargs="+", metavar="NAME", help="train only these runs (names as `list` prints them)")
    run.add_argument("--parallel", type=int, metavar="K", help="run K shards as K local processes (logs in OUT/logs/)")
    run.add_argument("--threads", type=int, help="torch CPU threads per process")
    run.add_argument("--no-progress", action="store_true", help="hide the tqdm progress bars")
    run.set_defaults(func=_cmd_run)
    lst = sub.add_parser("list", help="print one `run --only NAME` command per run (for Slurm arrays / job launchers)",
                         description="Save the resolved spec as OUT/scaling_spec.json and print one command per run; "
                                     "the run count and total FLOPs go to stderr.")
    _spec_arguments(lst)
    lst.set_defaults(func=_cmd_list)
    summ = sub.add_parser("summarize", help="merge the finished runs into OUT/sweep_summary.json and print them")
    summ.add_argument("out", type=Path, help="sweep folder")
    summ.set_defaults(func=_cmd_summarize)


def build_parser(prog: str = _COMMAND) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Scaling sweeps over width, depth, heads, lr and seed "
                                     "(run a shard, list one command per run, summarize what finished).")
    add_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def main(argv: list[str] | None = None, prog: str = _COMMAND) -> int:
    args = build_parser(prog).parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    return run_cli(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
