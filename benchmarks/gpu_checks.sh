#!/bin/bash
# The checks that need a GPU, each part sized for one call of at most 10 minutes on one GPU.
# Needs the dev dependencies and the Fashion-MNIST files (BAYESYM_DATA or the Debian path).
#
#   bash benchmarks/gpu_checks.sh tests       # CUDA tests (pytest -k cuda), ~2 min
#   bash benchmarks/gpu_checks.sh speed [B]   # marglik/MAP on the GPU, alone on it, 3 repeats, ~1 min;
#                                             # B: curvature batch size (default: the trainer's GPU
#                                             # default, at least 512; 128 gives the training batch)
#   bash benchmarks/gpu_checks.sh kfac        # the curvature issue's targets on the GPU: kfac_speed.py (MLP and
#                                             # CNN, ours vs an epoch and vs ASDL / curvlinops), ~3 min (estimated)
#   bash benchmarks/gpu_checks.sh zoo         # marglik/MAP of the Table 1 and Table 3 backbones, ~5 min (estimated)
#   bash benchmarks/gpu_checks.sh distributed # CPU cores, not the GPU: data-parallel marglik on 1 vs 2 and 4
#                                             # gloo processes (distributed_speed.py; Ray part skipped where
#                                             # Ray is not installed), ~4 min (estimated)
#   bash benchmarks/gpu_checks.sh selectors   # every D4-space selector and the baselines through
#                                             # `bayesym compare --device cuda` (1 seed, 1000 images,
#                                             # 6 epochs), then the same on the CPU: same choices? ~4 min
#                                             # (estimated)
#   bash benchmarks/gpu_checks.sh multigroup  # Table 3 on Fashion-MNIST: both GCONV variants x plain, rot90,
#                                             # rotated, 3 seeds each, 2000 images, 60 epochs, a hyper step per
#                                             # epoch after 15: six processes at once, ~8 min (estimated)
#
# Results go to benchmarks/results/ (see docs/benchmarks.md and docs/reproductions.md).
set -u
cd "$(dirname "$0")/.."
case "${1:-}" in
tests)
    python3 -m pytest -q -p no:cacheprovider -p no:benchmark -n 8 tests -k cuda -rs ;;
speed)
    b="${2:-}"
    python3 benchmarks/marglik_speed.py --device cuda --fashion-mnist --threads 1 --repeats 3 \
        ${b:+--marglik-batch-size "$b"} --output "marglik_speed_gpu${b:+_b$b}" ;;
kfac)
    python3 benchmarks/kfac_speed.py --device cuda --threads 1 --repeats 3 --output kfac_speed_gpu ;;
zoo)
    for m in quadrant table3; do
        python3 benchmarks/marglik_speed.py --device cuda --model "$m" --n 4096 --n-test 1000 \
            --threads 1 --repeats 2 --output "marglik_speed_gpu_$m"
    done ;;
distributed)
    for r in 2 4; do
        python3 benchmarks/distributed_speed.py --ranks "$r" --threads 1 --output "distributed_speed_${r}ranks"
    done ;;
selectors)
    for dev in cuda cpu; do
        bayesym compare --task rotated-fmnist --space d4 --device "$dev" --threads 1 --quiet \
            --selectors static,marglik,rpp,equinas-e,equinas-d,ace-eq,ace-resilient \
            --baselines C1,D4 --seeds 0 --budget-epochs 6 --train-size 1000 --val-size 300 \
            --test-size 2000 --out "runs/gpu_selectors_$dev"
    done
    cat runs/gpu_selectors_cuda/compare.md runs/gpu_selectors_cpu/compare.md ;;
multigroup)
    for v in full paper; do for d in plain rot90 rotated; do
        python3 benchmarks/reproduce_multigroup.py --device cuda --threads 1 --data fashion-mnist \
            --variants "$v" --datasets "$d" --seeds 0,1,2 --train-size 2000 --epochs 60 \
            --burn-in 15 --output "gpu_table3_${v}_$d" &
    done; done
    wait
    python3 benchmarks/reproduce_multigroup.py --output gpu_table3 \
        --summary benchmarks/results/gpu_table3_{full,paper}_*.json ;;
*)
    echo "usage: bash benchmarks/gpu_checks.sh tests|speed [B]|kfac|zoo|distributed|selectors|multigroup" >&2; exit 2 ;;
esac
