#!/usr/bin/env bash
# Train the FGSM-RS PreAct ResNet-18 baseline (submissions/cifar10/preact-resnet18-fgsm-rs) on the
# CIFAR-10 training files present in $DATA_DIR/cifar10, then evaluate it on test images 0..999
# with PGD and AutoAttack, on one GPU. It needs only part of the training set: the npz files
# train-0.npz and train-1.npz (20,000 images, 1,000 of them held out for early stopping) plus
# test-0-999.npz and their SHA256SUMS, in the npz layout of robbench.data.npz.
#
#   mkdir -p device/cifar10 && cp CIFAR10_NPZ_DIR/{train-0.npz,train-1.npz,test-0-999.npz,SHA256SUMS} device/cifar10/
#   OUT=/tmp/fgsm-rs bash scripts/gpu_cifar_fgsm_rs.sh
#
# Python packages missing on the GPU host can be put as wheels in device/wheels: they are installed
# once into device/site (SITE), which later runs reuse.
# CPU smoke test of the same path (about a minute with ATTACKS=pgd; AutoAttack on a CPU takes longer):
#   TINY=1 DEVICE=cpu ATTACKS=pgd OUT=/tmp/fgsm-rs DATA_DIR=/folder/holding/cifar10 bash scripts/gpu_cifar_fgsm_rs.sh
#
# Environment: OUT (required: the output folder), DATA_DIR (default device), EPOCHS
# (default 30: ~4,500 steps, 3/4 of Wong et al.'s 15 epochs on 50,000 images; expect a few seconds
# per epoch on an H100), DEVICE (default cuda), N_TEST (default 1000), ATTACKS (default
# pgd,autoattack), TINY=1 (width 8, one epoch, 64 training images, 32 held out, 16 test images).
# The GPU host's Python needs what robbench imports: pydantic, pyyaml, rich, safetensors, numpy,
# pyautoattack (not huggingface_hub: local weights never import it).
# Writes under $OUT: train.yaml, model/{model.safetensors,model.yaml,train_log.json},
# results/cifar10/linf/<name>/<run id>.json with its .adv.npz (check it with `robbench verify`),
# timings.txt, device.txt. CONFIG (default the FGSM-RS train.yaml) trains another baseline the same
# way, e.g. CONFIG=submissions/cifar10/preact-resnet18-pgd-at/train.yaml EPOCHS=10.
set -euo pipefail

OUT=${OUT:?set OUT to the output folder}
DATA_DIR=${DATA_DIR:-device}
EPOCHS=${EPOCHS:-30}
DEVICE=${DEVICE:-cuda}
N_TEST=${N_TEST:-1000}
ATTACKS=${ATTACKS:-pgd,autoattack}
TINY=${TINY:-0}
SITE=${SITE:-device/site}
CONFIG=${CONFIG:-submissions/cifar10/preact-resnet18-fgsm-rs/train.yaml}
mkdir -p "$OUT"

if compgen -G "device/wheels/*.whl" > /dev/null && [ ! -d "$SITE" ]; then
  python -m pip install --quiet --no-index --no-deps --target "$SITE" device/wheels/*.whl
fi
export PYTHONPATH="$PWD${SITE:+:$PWD/$SITE}${PYTHONPATH:+:$PYTHONPATH}"

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"; } > "$OUT/device.txt"

EPOCHS=$EPOCHS TINY=$TINY python - "$CONFIG" "$OUT/train.yaml" <<'PY'
import os, sys, yaml
config = yaml.safe_load(open(sys.argv[1]))
config["epochs"] = int(os.environ["EPOCHS"])
if os.environ["TINY"] == "1":  # the same code path, small enough for a CPU
    config.update(epochs=1, architecture_kwargs={"width": 8}, n_train=64, holdout=32, batch_size=32,
                  eval_examples=32, eval_attack_steps=3)
yaml.safe_dump(config, open(sys.argv[2], "w"), sort_keys=False)
PY
if [ "$TINY" = 1 ]; then N_TEST=16; fi

started=$(date +%s)
python -m robbench train "$OUT/train.yaml" --out "$OUT/model" --device "$DEVICE" --data-dir "$DATA_DIR"
trained=$(date +%s)
python -m robbench evaluate "$OUT/model/model.yaml" --threat-model linf --attacks "$ATTACKS" \
  --n-examples "$N_TEST" --device "$DEVICE" --data-dir "$DATA_DIR" --results-dir "$OUT/results"
evaluated=$(date +%s)
printf 'train_seconds %s\nevaluate_seconds %s\n' "$((trained - started))" "$((evaluated - trained))" | tee "$OUT/timings.txt"
