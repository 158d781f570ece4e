"""Where tinyinterp finds the shared data it must never copy: ``TINYINTERP_DATA`` or ``../shared/data``."""

from __future__ import annotations

import os
from pathlib import Path

from tinyinterp.errors import DataError

DATA_ENV = "TINYINTERP_DATA"
_REPO_ROOT = Path(__file__).resolve().parents[2]


def data_dir(required: bool = True) -> Path | None:
    """The shared data folder: ``$TINYINTERP_DATA``, else ``../shared/data`` beside the checkout.

    ``TINYINTERP_DATA`` may point at the data folder itself or at its ``tinystories`` sub-folder.
    """
    env = os.environ.get(DATA_ENV)
    candidates = [Path(env).expanduser()] if env else []
    candidates.append(_REPO_ROOT.parent / "shared" / "data")
    for path in candidates:
        if path.name == "tinystories" and (path.parent / "tokenizers").is_dir():
            path = path.parent
        if path.is_dir():
            return path
    if required:
        where = f"${DATA_ENV}={env}" if env else "../shared/data"
        raise DataError(f"data folder not found at {where}; set {DATA_ENV} to the folder holding tinystories/ and tokenizers/")
    return None


def gpt2_tokenizer_file() -> Path:
    return data_dir() / "tokenizers" / "gpt2" / "tokenizer.json"


def eval_prompts_file() -> Path:
    return data_dir() / "eval-prompts" / "Evaluation prompts.yaml"
