"""Export a tinyinterp model or run as a Hugging Face folder that ``transformers`` and TransformerLens open.

``tinyinterp export RUN --out DIR`` (or :func:`export_run` / :func:`export_model`) writes

* ``config.json`` — ``GPTNeoForCausalLM`` (GPT-Neo runs: unscaled attention, bias-free q/k/v, local
  layers) or ``GPT2LMHeadModel`` (GPT-2-style runs), see :func:`tinyinterp.hf.convert.hf_architecture_for`;
* ``model.safetensors`` — the weights under HF names (exact copies: export → import is bit-identical);
* ``tokenizer.json`` + ``tokenizer_config.json`` (which holds the special tokens; transformers 5 writes
  no ``special_tokens_map.json``) — our restricted BPE as a ``PreTrainedTokenizerFast`` with ``<|endoftext|>`` as BOS/EOS/UNK, so ``AutoTokenizer`` loads it offline
  and tokenizes exactly as :class:`tinyinterp.data.tokenizer.Tokenizer` does.

``AutoModelForCausalLM.from_pretrained(DIR)`` then gives the same logits (within 1e-4) and
``TransformerBridge.boot_transformers(DIR)`` the same activations. A run HF cannot express (e.g. a legacy
run with a trained unembedding bias, or a model after ``process_weights``) fails with one line saying why,
before anything is written.

* ``written_by_tinyinterp.json`` — the marker: which files this export wrote. An existing ``DIR`` is replaced
  only if it is empty or an earlier export whose files are all listed in its marker; anything else (a
  downloaded model, a folder with a README someone added) is refused in one line, nothing deleted.

The folder is written next to ``DIR`` under a hidden temporary name (carrying the writer's pid) and renamed
into place at the end, with the permissions an ordinary ``mkdir`` would give (umask respected); a write
error (disk full, read-only file system) is one line and leaves the earlier export as it was; the
temporary folder of a killed export is removed by the next export to the same ``DIR``.

    >>> from tinyinterp.hf.export import export_run
    >>> export_run("runs/demo", "exports/demo")
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from tinyinterp.io.atomic import current_umask
from tinyinterp.cli.commands import EXPORT
from tinyinterp.errors import TinyinterpError
from tinyinterp.hf.convert import hf_config_dict, hf_state_dict

log = logging.getLogger(__name__)

MARKER_FILE = "written_by_tinyinterp.json"
"""Written last into every export: ``{"tinyinterp_export": 1, "files": [...]}``."""
# The tokenizer class name transformers 4.x and 5.x both resolve to "load tokenizer.json as it is" (5.x saves
# its own new name, TokenizersBackend, which 4.x cannot import; GPT2TokenizerFast would make 5.x rebuild the
# pipeline from vocab + merges instead of reading ours).
HF_TOKENIZER_CLASS = "PreTrainedTokenizerFast"


def _write_tokenizer(tokenizer, folder: Path) -> None:
    from transformers import PreTrainedTokenizerFast

    eot = tokenizer.eot_token
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer.hf, bos_token=eot, eos_token=eot, unk_token=eot,
        model_max_length=None, clean_up_tokenization_spaces=False,
    )
    fast.save_pretrained(str(folder))
    config_path = folder / "tokenizer_config.json"
    tok_config = json.loads(config_path.read_text(encoding="utf-8"))
    tok_config["tokenizer_class"] = HF_TOKENIZER_CLASS
    tok_config["add_bos_token"] = False  # as trained: nothing is prepended (4.x GPT-2 classes read this key)
    config_path.write_text(json.dumps(tok_config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _marked_files(folder: Path) -> set[str] | None:
    """The files an earlier export listed in its marker, or ``None`` if ``folder`` has no valid marker."""
    try:
        marker = json.loads((folder / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    files = marker.get("files") if isinstance(marker, dict) and marker.get("tinyinterp_export") == 1 else None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return None
    return set(files) | {MARKER_FILE}


def _check_target(out_dir: Path) -> None:
    """Refuse to replace a folder that is not an earlier export (so a typo cannot delete a run, a
    downloaded model, or files someone put beside an export)."""
    if not out_dir.exists() and not out_dir.is_symlink():
        return
    if out_dir.is_symlink():
        raise TinyinterpError(f"--out {out_dir}: is a symbolic link; pass the folder it points to")
    if not out_dir.is_dir():
        raise TinyinterpError(f"--out {out_dir}: exists and is not a directory")
    present = {p.name for p in out_dir.iterdir()}
    if not present:
        return
    marked = _marked_files(out_dir)
    if marked is None:
        raise TinyinterpError(
            f"--out {out_dir}: exists and is not an earlier Hugging Face export by `tinyinterp export` (no {MARKER_FILE}); "
            "choose an empty or new folder"
        )
    foreign = sorted(present - marked)
    if foreign:
        raise TinyinterpError(
            f"--out {out_dir}: holds files an earlier export did not write ({', '.join(foreign[:3])}"
            f"{' …' if len(foreign) > 3 else ''}); move them away or choose another folder"
        )


def _temp_prefix(out_dir: Path) -> str:
    return f".{out_dir.name}.export-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_stale(out_dir: Path) -> None:
    """Remove the hidden folders of an export that was killed (its pid is gone). If it died between its two
    renames, the earlier export sits under the ``.old`` name with ``out_dir`` missing: put it back."""
    prefix = _temp_prefix(out_dir)
    for path in sorted(out_dir.parent.glob(prefix + "*")):
        pid_text, _, kind = path.name.removeprefix(prefix).partition(".")
        pid = int(pid_text.split("-")[0]) if pid_text.split("-")[0].isdigit() else None
        if pid is None or _pid_alive(pid) and pid != os.getpid():
            continue
        if kind == "old" and not out_dir.exists():
            os.replace(path, out_dir)
            log.info("restored the earlier export %s from a killed export's %s", out_dir, path.name)
        else:
            shutil.rmtree(path, ignore_errors=True)
            log.info("removed %s, left by a killed export", path)


def _ordinary_permissions(folder: Path) -> None:
    """``mkdtemp`` makes the folder 0700; give the export what ``mkdir`` + ``open`` would (umask respected)."""
    umask = current_umask()
    for path in folder.iterdir():
        os.chmod(path, 0o666 & ~umask)
    os.chmod(folder, 0o777 & ~umask)


def export_model(model, out_dir: str | Path, tokenizer=None) -> Path:
    """Write ``model`` (our ``HookedTransformer``) and its tokenizer as a Hugging Face folder; returns it."""
    from tinyinterp.runs.rundir import atomic_save_tensors

    tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise TinyinterpError("export: the model has no tokenizer; pass tokenizer=")
    if tokenizer.vocab_size != model.cfg.d_vocab:
        raise TinyinterpError(
            f"export: tokenizer has {tokenizer.vocab_size} tokens but the model's d_vocab is {model.cfg.d_vocab}"
        )
    arch, weights = hf_state_dict(model)  # raises NotExpressibleError before anything is written
    config = hf_config_dict(model.cfg, arch, eot_id=tokenizer.eot_id)
    # "dtype" is the key transformers >= 4.56 reads, "torch_dtype" the one older 4.x reads.
    config["dtype"] = config["torch_dtype"] = str(next(model.parameters()).dtype).removeprefix("torch.")

    out_dir = Path(out_dir).expanduser().absolute()
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        _clean_stale(out_dir)
    except OSError as e:
        raise TinyinterpError(f"--out {out_dir}: cannot write there ({e.strerror or type(e).__name__})") from None
    _check_target(out_dir)
    tmp = None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f"{_temp_prefix(out_dir)}{os.getpid()}-", suffix=".tmp", dir=out_dir.parent))
        atomic_save_tensors(tmp / "model.safetensors", weights, metadata={"format": "pt"})
        _write_tokenizer(tokenizer, tmp)
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        marker = {"tinyinterp_export": 1, "files": sorted(p.name for p in tmp.iterdir())}
        (tmp / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        _ordinary_permissions(tmp)
        if out_dir.exists():  # replace an earlier export: move it aside, rename, then delete it
            old = out_dir.with_name(f"{_temp_prefix(out_dir)}{os.getpid()}.old")
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except BaseException as e:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, Exception) and not isinstance(e, TinyinterpError):  # OSError, SafetensorError (disk full…)
            reason = getattr(e, "strerror", None) or (str(e).splitlines()[0][:120] if str(e) else type(e).__name__)
            raise TinyinterpError(f"export to {out_dir} failed ({reason}); an earlier export there is unchanged") from None
        raise
    log.info("exported %s model to %s", arch, out_dir)
    return out_dir


def export_run(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Export the final weights of run directory ``run_dir`` (or a checkpoint folder) to ``out_dir``."""
    from tinyinterp.runs.rundir import load_run

    return export_model(load_run(Path(run_dir)), out_dir)


def add_subparser(subparsers) -> None:
    p = subparsers.add_parser(
        EXPORT.name,
        help=EXPORT.help,
        description=(
            "Write RUN (a run or checkpoint directory) as a Hugging Face folder: config.json, model.safetensors "
            "and tokenizer files, loadable offline with AutoModelForCausalLM / AutoTokenizer.from_pretrained(DIR) "
            "and TransformerBridge.boot_transformers(DIR)."
        ),
    )
    p.add_argument("run", help="run directory or checkpoint directory to export")
    p.add_argument("--out", required=True, help="output folder (created; an earlier export there is replaced)")
    p.set_defaults(func=_run_export)


def _run_export(args) -> int:
    out = export_run(args.run, args.out)
    print(out)
    return 0
