#!/usr/bin/env bash
# Train the diffusion prior on a lent GPU in one prepared call (issue #26, deliverable 5), bring it back, install it.
#
# The device tool copies the working tree (at most 64 MiB) to a bare machine with torch but no diffusers and no
# datasets. So, on this machine:
#   bench/gpu_prior.sh pack           # .gpu/: the diffusers wheel and the training photos as JPEG (q95), and
#                                     # moves pretrained/restorers aside (the tree must fit in 64 MiB)
# then one device call (timeout 600 s; the training stops itself after GPU_MINUTES):
#   run(command="bash bench/gpu_prior.sh train", carry=[".gpu"], timeout_s=600)
# then, with the files it brought back (under the reply's files_at):
#   bench/gpu_prior.sh unpack FILES_AT    # puts pretrained/restorers back, installs the prior (measured on clean/val)
# Try it first on the CPU: GPU_QUICK=1 bench/gpu_prior.sh train  (a few steps, tiny batch, writes ./.gpu/out).
set -euo pipefail
cd "$(dirname "$0")/.."
GPU_DIR=.gpu
DATASETS="${DIFFLOSS_DATASETS:-../shared/datasets}"
ASIDE="${GPU_ASIDE:-/tmp/diffloss-restorers-aside}"
PY="${PYTHON:-python3}"

case "${1:-}" in
pack)
  grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
  mkdir -p "$GPU_DIR/whl" "$GPU_DIR/data/clean/train"
  "$PY" -m pip download -q --no-deps --only-binary=:all: -d "$GPU_DIR/whl" diffusers==0.42.1 importlib_metadata
  "$PY" - "$DATASETS/clean/train" "$GPU_DIR/data/clean/train" <<'EOF'
import sys
from pathlib import Path
from PIL import Image
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
for p in sorted(src.glob("*.png")):
    Image.open(p).convert("RGB").save(dst / (p.stem + ".jpg"), quality=95)
EOF
  if [ -d pretrained/restorers ]; then mv pretrained/restorers "$ASIDE"; fi
  du -sh "$GPU_DIR"; echo "pretrained/restorers moved to $ASIDE: run 'bench/gpu_prior.sh unpack' to put it back"
  ;;
train)
  if [ -d "$GPU_DIR/whl" ] && ! "$PY" -c "import diffusers" 2>/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
      "$GPU_DIR"/whl/*.whl
    export PYTHONPATH=/tmp/site
  fi
  OUT_DIR="${OUT:-$GPU_DIR/out}"
  RUN=/tmp/gpu-prior
  if [ -n "${GPU_QUICK:-}" ]; then  # the CPU rehearsal: the same commands, tiny
    ARGS=(--preset tiny --crop 16 --batch 4 --steps 6 --save-every 3 --log-every 1 --time-limit 2)
    INIT=()
  else
    # The shipped architecture continued (the Train tab's cost stays as it is), 30-800 band, min-SNR, augmented,
    # at batch 128 for at most GPU_MINUTES minutes.
    ARGS=(--crop 64 --batch 128 --steps 8000 --lr 2e-4 --warmup 200 --save-every 2000 --log-every 200
          --time-limit "${GPU_MINUTES:-8}" --t-min 30 --t-max 800 --weighting min-snr --augment)
    INIT=(--init pretrained/prior)
  fi
  PYTHONUNBUFFERED=1 "$PY" -m diffloss.train prior --clean "$GPU_DIR/data/clean/train" "${INIT[@]}" "${ARGS[@]}" \
    --out "$RUN" --no-resume 2>&1 | tail -n 40
  "$PY" -m diffloss.train export "$RUN" --to "$RUN/export"
  mkdir -p "$OUT_DIR/prior"
  cp "$RUN"/export/*.json "$RUN"/export/*.safetensors "$OUT_DIR/prior/"
  cp "$RUN"/log.csv "$OUT_DIR/" 2>/dev/null || true
  ls -la "$OUT_DIR/prior"
  ;;
unpack)
  FILES_AT="${2:?give the folder the device call brought back (files_at)}"
  if [ -d "$ASIDE" ] && [ ! -d pretrained/restorers ]; then mv "$ASIDE" pretrained/restorers; fi
  "$PY" - "$FILES_AT/prior" "$DATASETS" <<'EOF'
import sys
from pathlib import Path
from diffloss.family import ZooPaths
from diffloss.zoo import install_prior
install_prior(Path(sys.argv[1]), ZooPaths(datasets=Path(sys.argv[2])))
EOF
  ;;
*)
  echo "usage: bench/gpu_prior.sh pack | train | unpack FILES_AT" >&2
  exit 2
  ;;
esac
