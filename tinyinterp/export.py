"""Export a tinyinterp model or run as a Hugging Face folder that ``transformers`` and TransformerLens open.

``tinyinterp export RUN --out DIR`` (or :func:`export_run` / :func:`export_model`) writes

* ``config.json`` — ``GPTNeoForCausalLM`` (GPT-Neo runs: unscaled attention, bias-free q/k/v, local
  layers) or ``GPT2LMHeadModel`` (GPT-2-style runs), see :func:`tinyinterp.hf_convert.hf_architecture_for`;
* ``model.safetensors`` — the weights under HF names (exact copies: export → import is bit-identical);
* ``tokenizer.json`` + ``tokenizer_config.json`` + ``special_tokens_map.json`` — our restricted BPE as a
  ``PreTrainedTokenizerFast`` with ``<|endoftext|>`` as BOS/EOS/UNK, so ``AutoTokenizer`` loads it offline
  and tokenizes exactly as :class:`tinyinterp.tokenizer.Tokenizer` does.

``AutoModelForCausalLM.from_pretrained(DIR)`` then gives the same logits (within 1e-4) and
``TransformerBridge.boot_transformers(DIR)`` the same activations. A run HF cannot express (e.g. a legacy
run with a trained unembedding bias) fails with one line saying why, before anything is written. The
folder is written next to ``DIR`` under a temporary name and renamed into place at the end.

    >>> from tinyinterp.export import export_run
    >>> export_run("runs/demo", "exports/demo")
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from tinyinterp.errors import TinyinterpError
from tinyinterp.hf_convert import hf_config_dict, hf_state_dict

log = logging.getLogger(__name__)

_HF_MARKERS = ("config.json", "model.safetensors", "tokenizer.json")
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


def _check_target(out_dir: Path) -> None:
    """Refuse to replace a folder that is not an earlier export (so a typo cannot delete a run)."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise TinyinterpError(f"--out {out_dir}: exists and is not a directory")
    if any(out_dir.iterdir()) and "model_type" not in _read_config(out_dir):
        raise TinyinterpError(
            f"--out {out_dir}: exists and is not an earlier Hugging Face export; choose an empty or new folder"
        )


def _read_config(folder: Path) -> dict:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def export_model(model, out_dir: str | Path, tokenizer=None) -> Path:
    """Write ``model`` (our ``HookedTransformer``) and its tokenizer as a Hugging Face folder; returns it."""
    from tinyinterp.rundir import atomic_save_tensors

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

    out_dir = Path(out_dir).expanduser().resolve()
    _check_target(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        atomic_save_tensors(tmp / "model.safetensors", weights, metadata={"format": "pt"})
        _write_tokenizer(tokenizer, tmp)
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        if out_dir.exists():  # replace an earlier export: move it aside, rename, then delete it
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("exported %s model to %s", arch, out_dir)
    return out_dir


def export_run(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Export the final weights of run directory ``run_dir`` (or a checkpoint folder) to ``out_dir``."""
    from tinyinterp.rundir import load_run

    return export_model(load_run(Path(run_dir)), out_dir)


def add_subparser(subparsers) -> None:
    p = subparsers.add_parser(
        "export",
        help="write a run as a Hugging Face model folder",
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
