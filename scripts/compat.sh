#!/usr/bin/env bash
# make compat: tinyinterp next to SAELens. Builds a second venv (.venv-compat) with `pip install -e . sae-lens`
# (pip must resolve it: sae-lens 6.x pins transformer-lens<4, so this venv gets TL 3.9), runs the TL conformance
# subset of our tests on that TL, trains an SAE with SAELens's runner on a tiny run of ours, evaluates it on our
# hook names, runs the README's SAELens block, and loads our export under transformers 4.x (.venv-tf4).
# Offline: no HF Hub (local TinyStories text). Work files go to compat-out/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
TORCH="${TORCH:-torch==2.13.0}"   # the CPU wheel these machines carry, as in the Makefile
COMPAT=.venv-compat
TF4=.venv-tf4
WORK=compat-out
# The tests that must hold on TL 3.9 as on 4.3 (checks of TL-4-only features skip there with a reason).
CONFORMANCE_TESTS=(tests/tinyinterp/tl tests/tinyinterp/test_tokenizer_hf.py tests/tinyinterp/test_export_compat.py
                   tests/tinyinterp/test_hf_import.py)
export TINYINTERP_DATA="${TINYINTERP_DATA:-$(cd .. && pwd)/shared/data}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
export OMP_NUM_THREADS=1 PYTHONWARNINGS=ignore
start=$SECONDS
rm -rf "$WORK" && mkdir -p "$WORK"

build_venv() {  # build_venv DIR PIP-ARGS...: idempotent (stamp newer than pyproject.toml and this script)
  local venv=$1; shift
  local stamp=$venv/.compat-installed
  if [[ -f $stamp && $stamp -nt pyproject.toml && $stamp -nt scripts/compat.sh ]]; then return 0; fi
  test -x "$venv/bin/python" || "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q "$TORCH"
  "$venv/bin/python" -m pip install -q "$@"
  touch "$stamp"
}

# Both venvs at once (downloads overlap); each logs to its own file, shown only on failure.
build_venv "$COMPAT" -e . sae-lens pytest pytest-timeout hypothesis >"$WORK/venv-compat.log" 2>&1 & compat_pid=$!
build_venv "$TF4" "transformers<4.58" safetensors >"$WORK/venv-tf4.log" 2>&1 & tf4_pid=$!
wait $compat_pid || { tail -40 "$WORK/venv-compat.log"; echo "compat: pip could not install tinyinterp next to sae-lens"; exit 1; }
wait $tf4_pid || { tail -40 "$WORK/venv-tf4.log"; echo "compat: could not build the transformers-4 venv"; exit 1; }
echo "[compat] venvs ready: $((SECONDS - start))s ($("$COMPAT/bin/python" -m pip list 2>/dev/null | grep -iE '^(sae-lens|transformer-lens|transformers) ' | tr -s ' ' | paste -sd, -))"

t=$SECONDS
"$COMPAT/bin/python" -m pytest -q -p no:cacheprovider "${CONFORMANCE_TESTS[@]}"
echo "[compat] TL conformance subset on sae-lens's TransformerLens: $((SECONDS - t))s"

"$COMPAT/bin/python" scripts/compat_saelens.py --work "$WORK"
"$TF4/bin/python" scripts/compat_tf4.py "$WORK"
echo "[compat] all green in $((SECONDS - start))s"
