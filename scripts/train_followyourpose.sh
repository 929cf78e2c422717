#!/usr/bin/env bash
# Follow-Your-Pose training, both stages, on SD-1.4 from pretrained_weights/, on every GPU there is.
#   bash scripts/train_followyourpose.sh [stage1|stage2|both] [--resume] [key=value ...]
# stage1: the pose adapter on TikTok-format pose-image pairs (configs/followyourpose/stage1.yaml, data.root);
# stage2: text-to-video on clips + captions (stage2.yaml, data.captions), keeping stage 1's adapter for sampling;
# both (default): stage 1, then stage 2. key=value arguments go to both stages (e.g. trainer.devices=4).
# Stage 2 takes stage 1's adapter (FYP_RUNS-stage1/pipeline/pose_adapter) unless model.paths.pose_adapter=,
# model.pretrained= or model.with_pose_adapter= is given.
# FYP_TRAINER: a trainer preset (default none: Lightning's devices auto; e.g. configs/trainer/ddp_8gpu.yaml).
# FYP_RUNS: run folders FYP_RUNS-stage1 / FYP_RUNS-stage2 (default runs/fyp).
# FYP_TINY=1: the tiny CPU configs on the toy world (made if missing): a smoke run of both stages on a laptop.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python; [ -x "$PY" ] || PY=python3
what=both
case "${1:-}" in stage1|stage2|both) what=$1; shift ;; esac
flags=(); overrides=()
for arg in "$@"; do case "$arg" in --*) flags+=("$arg") ;; *) overrides+=("$arg") ;; esac; done

if [ "${FYP_TINY:-0}" = 1 ]; then
  runs=${FYP_RUNS:-runs/fyp-tiny}
  s1=(-c configs/followyourpose/tiny_stage1.yaml); s2=(-c configs/followyourpose/tiny_stage2.yaml)
  [ -d dataset/toy ] || "$PY" -m magicpose toy-data --out dataset/toy --videos 4 --test-videos 1 --frames 12 --size 64
  captions=dataset/toy_clips/captions.jsonl
  [ -f "$captions" ] || "$PY" -c "import sys; from magicpose.data.video_caption import captions_for_folders as c; \
c(sys.argv[1], sys.argv[2], 'a person dancing')" dataset/toy/train_set "$captions"
else
  runs=${FYP_RUNS:-runs/fyp}
  s1=(-c configs/followyourpose/stage1.yaml); s2=(-c configs/followyourpose/stage2.yaml)
  if [ -n "${FYP_TRAINER:-}" ]; then s1+=(-c "$FYP_TRAINER"); s2+=(-c "$FYP_TRAINER"); fi
fi

if [ "$what" != stage2 ]; then
  "$PY" -m magicpose fit "${s1[@]}" "${flags[@]+"${flags[@]}"}" "run_dir=$runs-stage1" \
    "${overrides[@]+"${overrides[@]}"}"
fi
if [ "$what" != stage1 ]; then
  # stage 1's adapter, unless the command line says where the adapter comes from (then Python checks that)
  adapter=$runs-stage1/pipeline/pose_adapter; use_adapter=("model.paths.pose_adapter=$adapter")
  for arg in "${overrides[@]+"${overrides[@]}"}"; do
    case "$arg" in model.paths.pose_adapter=*|model.pretrained=*|model.with_pose_adapter=*) use_adapter=() ;; esac
  done
  if [ ${#use_adapter[@]} -gt 0 ] && [ ! -d "$adapter" ]; then
    echo "error: $adapter: no stage-1 pose adapter (run stage1 first, or pass model.paths.pose_adapter=DIR)" >&2
    exit 1
  fi
  "$PY" -m magicpose fit "${s2[@]}" "${flags[@]+"${flags[@]}"}" "run_dir=$runs-stage2" \
    "${use_adapter[@]+"${use_adapter[@]}"}" "${overrides[@]+"${overrides[@]}"}"
fi
