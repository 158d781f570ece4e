#!/usr/bin/env bash
# make compat: tinyinterp next to SAELens. Builds a second venv (.venv-compat) with `pip install -e . sae-lens`
# (pip must resolve it: sae-lens 6.x pins transformer-lens<4, so this venv gets TL 3.9), runs the TL conformance
# subset of our tests on that TL, trains an SAE with SAELens's runner on a tiny run of ours, evaluates it on our
# hook names, runs the README's SAELens block, and loads our export under transformers 4.57 (.venv-tf4: just
# transformers 4.x + the tokenizers / huggingface-hub it needs, layered over the compat venv's torch via PYTHONPATH,
# so torch is installed once).
# Offline: no HF Hub (local TinyStories text). Work files go to compat-out/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
TORCH="${TORCH:-torch==2.13.0}"   # the CPU wheel these machines carry, as in the Makefile
COMPAT=.venv-compat
TF4=.venv-tf4
TF4_PACKAGES=("transformers==4.57.6" "tokenizers>=0.22,<0.23" "huggingface-hub>=0.34,<1.0")
WORK=compat-out
# The tests that must hold on TL 3.9 as on 4.3 (checks of TL-4-only features skip there with a reason).
CONFORMANCE_TESTS=(tests/tinyinterp/models/tl tests/tinyinterp/data/test_tokenizer_hf.py tests/tinyinterp/hf/test_export_compat.py
                   tests/tinyinterp/hf/test_native_import.py)
export TINYINTERP_DATA="${TINYINTERP_DATA:-$(cd .. && pwd)/shared/data}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
export OMP_NUM_THREADS=1 PYTHONWARNINGS=ignore
start=$SECONDS
rm -rf "$WORK" && mkdir -p "$WORK"

fresh() { [[ -f $1 && $1 -nt pyproject.toml && $1 -nt scripts/compat.sh ]]; }  # stamp newer than its inputs

build_compat() {  # `pip install -e . sae-lens` must resolve: that is the point of this venv
  fresh "$COMPAT/.compat-installed" && return 0
  test -x "$COMPAT/bin/python" || "$PYTHON" -m venv "$COMPAT"
  "$COMPAT/bin/python" -m pip install -q "$TORCH"
  "$COMPAT/bin/python" -m pip install -q -e . sae-lens pytest pytest-timeout hypothesis
  touch "$COMPAT/.compat-installed"
}

build_tf4() {  # exact versions, no deps: everything else (torch, numpy, safetensors …) comes from the compat venv
  fresh "$TF4/.compat-installed" && return 0
  rm -rf "$TF4"
  "$PYTHON" -m pip install -q --no-deps --target "$TF4" "${TF4_PACKAGES[@]}"
  touch "$TF4/.compat-installed"
}

# Both at once (downloads overlap); each logs to its own file, shown only on failure.
build_compat >"$WORK/venv-compat.log" 2>&1 & compat_pid=$!
build_tf4 >"$WORK/venv-tf4.log" 2>&1 & tf4_pid=$!
wait $compat_pid || { tail -40 "$WORK/venv-compat.log"; echo "compat: pip could not install tinyinterp next to sae-lens"; exit 1; }
wait $tf4_pid || { tail -40 "$WORK/venv-tf4.log"; echo "compat: could not install transformers 4.x"; exit 1; }
echo "[compat] venvs ready: $((SECONDS - start))s ($("$COMPAT/bin/python" -m pip list 2>/dev/null | grep -iE '^(sae-lens|transformer-lens|transformers) ' | tr -s ' ' | paste -sd, -))"

t=$SECONDS
"$COMPAT/bin/python" -m pytest -q -p no:cacheprovider "${CONFORMANCE_TESTS[@]}"
echo "[compat] TL conformance subset on sae-lens's TransformerLens: $((SECONDS - t))s"

"$COMPAT/bin/python" scripts/compat_saelens.py --work "$WORK"
PYTHONPATH="$TF4" "$COMPAT/bin/python" scripts/compat_tf4.py "$WORK"
echo "[compat] all green in $((SECONDS - start))s"
