"""Cached, confined readers of a run's sparse dictionaries (``RUN/analysis/dictionaries/<name>/``).

A dictionary folder is SAELens's layout plus our files (docs/dictionaries.md): ``cfg.json``,
``sae_weights.safetensors``, ``train_cfg.json``, ``train_log.jsonl`` and, after ``tinyinterp sae eval``,
``eval.json``. ``<name>`` is one folder or a set member with one ``/`` (``transcoders/layer_03``).

Same rules as :mod:`apps.loaders`: pages pass a run and a dictionary *name*; :func:`dictionary_dir` is the
one gate that turns a name (from a widget or ``?dict=``) into a folder: no ``..``, no absolute path, no
NUL, at most one ``/``, and the folder (symlinks followed) must lie inside the run's dictionaries folder
and the runs root. Each public reader here owns its cache key (:func:`apps.loaders.file_key`: the resolved
path and its mtime) and reads through :mod:`apps.file_readers` (a corrupt file is one :class:`DataError`
line naming it; a torn ``train_log.jsonl`` loses only its bad lines, counted). Numbers are kept only when
finite; a page shows what is there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pandas as pd
import streamlit as st

from apps import file_readers, loaders
from apps.runs_root import PathOutsideRoot, active_root, resolve_in_root
from tinyinterp.dictionaries.evaluation import EVAL_FILE
from tinyinterp.dictionaries.formats import CFG_FILE
from tinyinterp.dictionaries.training import TRAIN_CFG, TRAIN_LOG
from tinyinterp.errors import DataError
from tinyinterp.runs.layout import dictionaries_dir

MAX_NAME_PARTS = 2
"""``sae-…`` or ``transcoders/layer_03``: a set member is one level deeper, never more."""
EVAL_NUMBERS = ("explained_variance", "mse", "cossim", "l0", "l1", "ce_loss_score", "kl_div_score",
                "ce_loss_without_sae", "ce_loss_with_sae", "ce_loss_with_ablation", "dead_fraction", "dense_threshold")
EVAL_COUNTS = ("dead_features", "dense_features", "n_tokens", "d_sae", "k")
CURVE_METRICS = ("loss", "fvu", "aux", "l0", "dead_fraction")
"""What ``train_log.jsonl`` lines may hold (the trainer logs fvu, aux, l0, dead_fraction), in chart order."""


def dictionaries_root(run: Path) -> Path:
    return dictionaries_dir(Path(run))


def dictionary_names(run: Path) -> list[str]:
    """Names (relative to ``analysis/dictionaries``) of the folders holding a ``cfg.json``, sorted.

    Listing reads no file; a folder whose ``cfg.json`` is a link out of the root is still listed, and
    refused in one line when a page opens it."""
    base = dictionaries_root(run)
    if not base.is_dir():
        return []
    found = set()
    for depth in range(1, MAX_NAME_PARTS + 1):
        for cfg in base.glob("/".join(["*"] * depth) + f"/{CFG_FILE}"):
            rel = cfg.parent.relative_to(base)
            if not any(part.startswith(".") for part in rel.parts):
                found.add(rel.as_posix())
    return sorted(found)


def dictionary_dir(run: Path, name: object) -> Path:
    """The folder of dictionary ``name`` of ``run``, resolved; one line for a name that leaves the run's
    dictionaries folder (``..``, absolute, a symlink out) or that is not a dictionary."""
    shown = repr(name)[:120]
    if not isinstance(name, str) or not name.strip() or "\x00" in name or "\\" in name:
        raise PathOutsideRoot(f"dictionary {shown}: expected a name under analysis/dictionaries, e.g. 'sae-…'")
    parts = PurePosixPath(name)
    if parts.is_absolute() or ".." in parts.parts or "." in name.split("/") or len(parts.parts) > MAX_NAME_PARTS:
        raise PathOutsideRoot(f"dictionary {shown}: refused, a dictionary is a folder (or set/folder) under "
                              "analysis/dictionaries of the run")
    base = resolve_in_root(dictionaries_root(run))
    folder = resolve_in_root(dictionaries_root(run) / parts)
    if not folder.is_relative_to(base):
        raise PathOutsideRoot(f"dictionary {shown}: refused, it resolves outside the run's analysis/dictionaries")
    if not (folder / CFG_FILE).is_file():
        raise DataError(f"dictionary {shown}: no {CFG_FILE} in that folder of analysis/dictionaries; not a dictionary")
    return folder


def _file(run: Path, name: str, file: str) -> Path:
    return dictionary_dir(run, name) / file


# ----- cfg.json ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DictionaryInfo:
    """What ``cfg.json`` says (ours under ``"tinyinterp"``, else SAELens's own fields)."""

    name: str
    kind: str
    hook_in: str
    hook_out: str
    d_in: int | None
    d_sae: int | None
    k: int | None
    training_tokens: int | None


def _text(value) -> str:
    return value if isinstance(value, str) else ""


@st.cache_data(show_spinner=False)
def _info(path: str, version: float, name: str) -> DictionaryInfo:
    raw = file_readers.read_json(path)
    if not isinstance(raw, dict):
        raise DataError(f"{active_root().shown(Path(path))}: expected a JSON object")
    ours = raw.get("tinyinterp") if isinstance(raw.get("tinyinterp"), dict) else {}
    meta = raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {}
    hook_in = _text(ours.get("hook_in")) or _text(meta.get("hook_name"))
    kind = _text(ours.get("kind")) or ("transcoder" if "transcoder" in _text(raw.get("architecture")) else "sae")
    return DictionaryInfo(
        name=name, kind=kind, hook_in=hook_in,
        hook_out=_text(ours.get("hook_out")) or _text(meta.get("hook_name_out")) or hook_in,
        d_in=file_readers.plain_int(ours.get("d_in", raw.get("d_in")), 1),
        d_sae=file_readers.plain_int(ours.get("d_sae", raw.get("d_sae")), 1),
        k=file_readers.plain_int(ours.get("k", raw.get("k")), 1),
        training_tokens=file_readers.plain_int(meta.get("training_tokens")))


def info(run: Path, name: str) -> DictionaryInfo:
    return _info(*loaders.file_key(_file(run, name, CFG_FILE)), name)


# ----- eval.json --------------------------------------------------------------------------------------


def has_eval(run: Path, name: str) -> bool:
    return (_file(run, name, EVAL_FILE)).is_file()


@st.cache_data(show_spinner=False)
def _evaluation(path: str, version: float) -> dict:
    raw = file_readers.read_json(path)
    if not isinstance(raw, dict):
        raise DataError(f"{active_root().shown(Path(path))}: expected a JSON object (write it with `tinyinterp sae eval`)")
    out: dict = {key: file_readers.finite_number(raw.get(key)) for key in EVAL_NUMBERS}
    out.update({key: file_readers.plain_int(raw.get(key)) for key in EVAL_COUNTS})
    hist = raw.get("density_histogram") if isinstance(raw.get("density_histogram"), dict) else {}
    edges, counts = hist.get("log10_edges"), hist.get("counts")
    if isinstance(edges, list) and isinstance(counts, list) and len(edges) == len(counts) + 1:
        lo = [file_readers.finite_number(e) for e in edges]
        n = [file_readers.plain_int(c) for c in counts]
        if None not in lo and None not in n:
            out["density_histogram"] = pd.DataFrame({"log10_lo": lo[:-1], "log10_hi": lo[1:], "features": n})
    return out


def evaluation(run: Path, name: str) -> dict:
    """``eval.json``'s numbers (None where absent or not finite) and its density histogram as a table."""
    return _evaluation(*loaders.file_key(_file(run, name, EVAL_FILE)))


# ----- train_log.jsonl, train_cfg.json -----------------------------------------------------------------


def _good_log_record(record: dict) -> bool:
    return file_readers.plain_int(record.get("step")) is not None and any(
        file_readers.finite_number(record.get(m)) is not None for m in CURVE_METRICS)


@st.cache_data(show_spinner=False)
def _train_log(path: str, version: float) -> tuple[pd.DataFrame, str | None]:
    log = file_readers.read_jsonl(path, accept=_good_log_record)
    rows = [{"step": r["step"], "tokens": file_readers.plain_int(r.get("tokens")),
             **{m: file_readers.finite_number(r.get(m)) for m in CURVE_METRICS}} for r in log.records]
    frame = pd.DataFrame(rows, columns=["step", "tokens", *CURVE_METRICS])
    return frame.dropna(axis=1, how="all"), file_readers.skipped_note(Path(path), log.skipped)


def train_log(run: Path, name: str) -> tuple[pd.DataFrame, str | None]:
    """``train_log.jsonl`` as a table (one row per logged step; unreadable lines skipped, and the one line
    that says so, or None)."""
    return _train_log(*loaders.file_key(_file(run, name, TRAIN_LOG)))


@st.cache_data(show_spinner=False)
def _train_cfg(path: str, version: float) -> dict:
    raw = file_readers.read_json(path)
    train = raw.get("train") if isinstance(raw, dict) else None
    if not isinstance(train, dict):
        raise DataError(f"{active_root().shown(Path(path))}: no 'train' object; not a dictionary's training config")
    return train


def train_cfg(run: Path, name: str) -> dict | None:
    """The ``train`` part of ``train_cfg.json`` (None when the folder has none, e.g. imported)."""
    path = _file(run, name, TRAIN_CFG)
    return _train_cfg(*loaders.file_key(path)) if path.is_file() else None
