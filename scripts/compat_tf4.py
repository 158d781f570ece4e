"""The transformers-4.x half of ``make compat``: a ``tinyinterp export`` opens with AutoTokenizer and
AutoModelForCausalLM under transformers 4.x, tokenizes as we do and gives our logits (within 1e-4).

Runs with transformers 4.57 (installed --target .venv-tf4) ahead of the compat venv on the path; it only reads the folder and the reference
written by scripts/compat_saelens.py.

    PYTHONPATH=.venv-tf4 .venv-compat/bin/python scripts/compat_tf4.py compat-out
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import transformers
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

TOL = 1e-4


def main(argv: list[str]) -> int:
    work = Path(argv[0])
    ref = load_file(str(work / "reference.safetensors"))
    text = (work / "reference.txt").read_text(encoding="utf-8")
    tokenizer = AutoTokenizer.from_pretrained(work / "hf")
    ids = tokenizer(text)["input_ids"]
    assert ids == ref["tokens"][0].tolist(), f"transformers {transformers.__version__} tokenizes differently"
    assert tokenizer.decode(ids) == text
    model = AutoModelForCausalLM.from_pretrained(work / "hf", attn_implementation="eager").eval()
    with torch.no_grad():
        diff = (model(ref["tokens"]).logits - ref["logits"]).abs().max().item()
    assert diff < TOL, f"logits differ by {diff:.2e} under transformers {transformers.__version__}"
    print(f"[compat] transformers {transformers.__version__}: {type(tokenizer).__name__} + {type(model).__name__} "
          f"load the export; same tokens, max logit diff {diff:.1e}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
