#!/usr/bin/env bash
# Stage 2 on several nodes with torchrun (no SLURM). Run this on every node with its NODE_RANK:
#   MASTER_ADDR=node0 NODE_RANK=0 NNODES=2 bash scripts/slurm/stage2_torchrun.sh
#   MASTER_ADDR=node0 NODE_RANK=1 NNODES=2 bash scripts/slurm/stage2_torchrun.sh
# "The only difference between the commands is the node rank."
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${MASTER_ADDR:?set MASTER_ADDR}" "${NODE_RANK:?set NODE_RANK}"
NNODES=${NNODES:-2}
exec .venv/bin/torchrun --nproc_per_node 8 --nnodes "$NNODES" --node_rank "$NODE_RANK" \
    --master_addr "$MASTER_ADDR" --master_port "${MASTER_PORT:-29500}" \
    -m magicpose fit -c configs/magicpose/stage2_pose.yaml -c configs/trainer/multinode.yaml \
    trainer.num_nodes="$NNODES" "$@"
