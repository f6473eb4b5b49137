#!/usr/bin/env bash
# Retrain every model of the embedded world (avbridge/world/models) from scratch.
#
#   training/train_world.sh [CLIPS] [SCALE]
#
# On a GPU the independent stages run side by side in two phases (the UNets need their
# VAE and text encoder); on CPU they run one after another. SCALE multiplies every
# stage's wall-time budget (minutes); the step counts are upper bounds.
set -euo pipefail
CLIPS=${1:-600}
SCALE=${2:-1}
PY=${PYTHON:-python}
T="$PY -m training.world.train"
m() { awk -v a="$1" -v s="$SCALE" 'BEGIN { printf "%.2f", a * s }'; }
COMMON="--clips $CLIPS --steps 1000000"

$T data --clips "$CLIPS"
if $PY -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  $T vocoder $COMMON --minutes "$(m 7.0)" &
  $T audio-vae $COMMON --minutes "$(m 2.6)" &
  $T audio-text $COMMON --minutes "$(m 1.2)" &
  $T video-vae $COMMON --minutes "$(m 2.6)" &
  wait %2 %3 %4
  $T audio-unet $COMMON --minutes "$(m 4.0)" &
  $T video-unet $COMMON --minutes "$(m 4.0)" &
  wait
else
  for s in audio-vae vocoder audio-text audio-unet video-vae video-unet; do
    $T "$s" $COMMON --minutes "$(m 12)"
  done
fi
if $PY -c "import training.world.train_binder" 2>/dev/null; then
  $T binder $COMMON --minutes "$(m 5.0)"
  $T binder-align $COMMON --minutes "$(m 5.0)"
  $T binder-align-av $COMMON --minutes "$(m 5.0)"
fi
