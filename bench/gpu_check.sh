#!/usr/bin/env bash
# bench/gpu_check.sh - the trainer's GPU check: `mixer train`'s own code on ONE NVIDIA GPU (sized for an
# H100/H200), offline, from the repository root, within BUDGET_S (default 480 s).
#
#   bash bench/gpu_check.sh --prepare-wheels   # where PyPI is reachable: cp312 wheels into ./.whl (~57 MB,
#                                             # git-ignored) for an offline GPU host
#   bash bench/gpu_check.sh                    # on the GPU host: install from ./.whl, run, summarise
#   GC_CPU_SMOKE=1 bash bench/gpu_check.sh     # tiny model on CPU: checks the plumbing end to end
#
# Parts (each under `timeout`; one failing does not stop the others; python stages in bench/gpu_check.py):
#   install  transformers/trl/peft/datasets/bitsandbytes wheels into $WORK/site (first on PYTHONPATH; the
#            host's CUDA torch and accelerate are used as they are)
#   env      versions, GPU, FlashAttention packages transformers reports usable, mixer's `auto` choice,
#            bf16 matmul ceiling                                                            -> env.json
#   assets   tokenizer trained locally, random-init model (MODEL_SIZE 7b = Llama-2-7B shape) saved as
#            safetensors, SFT and preference builds with Tulu-V2-like lengths (median ~350 tokens)
#   sft      mixer's build_sft_trainer: sdpa/padded vs auto/padding_free vs auto/packed (bf16 compute
#            copies of the fp32 master weights, as resolved) vs auto/packed/autocast vs <auto>/padded,
#            bf16 + gradient checkpointing as the recipes run                            -> sft.json
#   dpo      mixer's build_dpo_trainer (7b: reference log-probs precomputed), first loss vs ln 2 -> dpo.json
#   qlora    mixer's QLoRA path (NF4 + double quantisation, LoRA r64 on all linears)      -> qlora.json
#   bench    bench/train_throughput.py (raw step: sdpa and auto kernel x padded/padding-free/packed)
#                                                                                          -> bench.json
#   generate bench/gen_throughput.py: output tokens/s of transformers' continuous batching vs padded
#            generate, random-init GEN_SIZES shapes (default "1b 7b"), 512 prompts x 4 samples x 256 new
#            tokens (issue 20); also copied to bench/results/generate-<date>.json  -> generate.json
#   ablation issue 21's one-GPU levers, each alone against packed + bf16 copies: token micro-batches
#            (16k), Liger, regional torch.compile, every-other-layer checkpointing, FA3/FA4 when usable
#            (bench/gpu_ablation.py; not in the default PARTS: see bench/README.md) -> ablation.json and
#            bench/results/ablation-<date>-<gpu>-<size>.json
#   summary  table + verdicts against the targets                                         -> summary.json
# Results: $OUT (default /tmp/gpu_check_out, at most 9 files); scratch: $WORK (13.5 GB for the 7B).
#        PARTS=generate alone needs no assets (GEN_SIZES, GEN_PROMPTS, GEN_BUDGET_S: its timeout, 420); it is
#        not in the default parts: one lent session's ~8 minutes go to the trainer first, generation second
# Knobs: MODEL_SIZE=auto|7b|3b|1b|tiny (auto: from the card's memory: 7b from 120 GiB, i.e. an H200; 3b from
#        60 GiB, i.e. an 80 GB H100, where 7B full fine-tuning with fp32 masters does not fit; else 1b)
#        BENCH_SIZE (default MODEL_SIZE) BUDGET_S PARTS PDB (micro-batch, 4) ACCUM (4)
#        STEPS (8) WHEELS (.whl) SKIP_INSTALL=1 PY (python3)
set -u
set -o pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
OUT=${OUT:-/tmp/gpu_check_out}
WORK=${WORK:-/tmp/gpu_check_work}
PY=${PY:-python3}
WHEELS=${WHEELS:-$REPO/.whl}
BUDGET_S=${BUDGET_S:-480}
MODEL_SIZE=${MODEL_SIZE:-auto}
PARTS=${PARTS:-"install env assets sft dpo qlora bench"}

if [ "${1:-}" = "--prepare-wheels" ]; then
  mkdir -p "$WHEELS"
  plat="--only-binary=:all: --python-version 3.12 --implementation cp"
  for p in manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_24_x86_64 manylinux_2_27_x86_64 \
           manylinux_2_28_x86_64 manylinux_2_34_x86_64; do plat="$plat --platform $p"; done
  # what the GPU image lacks or has too old (it has torch, accelerate, tokenizers, safetensors, pyarrow, ...)
  for spec in transformers==5.24.0 trl==1.16.0 peft==0.21.2 datasets==5.2.0 "dill<0.4.2" "multiprocess<0.70.20" \
              bitsandbytes==0.50.2 liger-kernel==0.8.5; do
    # shellcheck disable=SC2086
    $PY -m pip download -q --no-deps $plat -d "$WHEELS" "$spec" || echo "could not download $spec"
  done
  du -sh "$WHEELS"
  exit 0
fi

if [ "${GC_CPU_SMOKE:-0}" = 1 ]; then
  MODEL_SIZE=tiny; export CUDA_VISIBLE_DEVICES=""
  export MIXER_COMPILE_BACKEND=${MIXER_COMPILE_BACKEND:-aot_eager}  # no C++ builds of the tiny model's layers
  case " $PARTS " in *" install "*) PARTS=${PARTS/install/}; SKIP_INSTALL=1 ;; esac
fi
if [ "$MODEL_SIZE" = auto ]; then
  # 7B full fine-tuning keeps fp32 masters + AdamW states + bf16 copies: ~18 bytes per parameter, ~120 GiB
  mem_mib=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits 2>/dev/null | head -1 | tr -dc 0-9)
  if [ -z "$mem_mib" ]; then MODEL_SIZE=tiny
  elif [ "$mem_mib" -ge 122880 ]; then MODEL_SIZE=7b
  elif [ "$mem_mib" -ge 61440 ]; then MODEL_SIZE=3b
  else MODEL_SIZE=1b; fi
  MODEL_SIZE_REASON="auto: ${mem_mib:-no} MiB of GPU memory"
else
  MODEL_SIZE_REASON="as set"
fi
echo "model shape: $MODEL_SIZE ($MODEL_SIZE_REASON; the MFU targets are stated for 7b on an H200)"
export MODEL_SIZE_REASON
BENCH_SIZE=${BENCH_SIZE:-$MODEL_SIZE}
mkdir -p "$OUT" "$WORK"
LOG="$OUT/log.txt"
[ "${1:-}" = "--install" ] || : >"$LOG"
START=$(date +%s)
SITE="$WORK/site"
export OUT GC_WORK="$WORK" MODEL_SIZE
export PYTHONPATH="$SITE:$REPO${PYTHONPATH:+:$PYTHONPATH}"
export HF_HOME="$WORK/hf" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1 HF_HUB_DISABLE_TELEMETRY=1 MIXER_CACHE_DIR="$WORK/cache"

declare -A STATUS
ORDER=()
left() { echo $(( BUDGET_S - ($(date +%s) - START) )); }
wants() { case " $PARTS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
part() {  # part NAME MAX_SECONDS CMD...: under timeout, logged, status recorded; never aborts the script
  local name=$1 max=$2; shift 2
  ORDER+=("$name")
  local rem; rem=$(left)
  if [ "$rem" -lt 20 ]; then STATUS[$name]="skipped (budget)"; echo "=== $name: skipped, ${rem}s left" | tee -a "$LOG"; return; fi
  local t=$(( max < rem ? max : rem ))
  echo "=== $name (timeout ${t}s, ${rem}s of budget left)" | tee -a "$LOG"
  local s; s=$(date +%s)
  export GC_PART_DEADLINE=$(( s + t ))
  timeout --kill-after=15 "$t" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]} d=$(( $(date +%s) - s ))
  case $rc in
    0) STATUS[$name]="ok ${d}s" ;;
    124|137) STATUS[$name]="TIMEOUT after ${d}s" ;;
    *) STATUS[$name]="FAILED rc=$rc ${d}s" ;;
  esac
}

install_wheels() {
  mkdir -p "$SITE"
  if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then echo "no wheels in $WHEELS: run --prepare-wheels where PyPI works"; return 1; fi
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl || return 1
  "$PY" -c 'import torch, transformers, trl, peft, accelerate, datasets; print("torch", torch.__version__, "cuda", torch.version.cuda, "| transformers", transformers.__version__, "trl", trl.__version__, "peft", peft.__version__, "accelerate", accelerate.__version__, "datasets", datasets.__version__)'
}

if [ "${1:-}" = "--install" ]; then install_wheels; exit $?; fi  # `timeout` runs programs, not functions
if wants install && [ "${SKIP_INSTALL:-0}" != 1 ]; then part install 120 bash "$REPO/bench/gpu_check.sh" --install; fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$LOG"
wants env && part env 60 "$PY" bench/gpu_check.py env
if wants assets; then
  if grep -q "\"model_size\": \"$MODEL_SIZE\"" "$WORK/assets.json" 2>/dev/null; then
    echo "=== assets: reusing $WORK ($MODEL_SIZE)" | tee -a "$LOG"
  else
    rm -f "$WORK/assets.json"
    part assets 150 "$PY" bench/gpu_check.py assets
  fi
fi
if [ -f "$WORK/assets.json" ]; then
  wants sft   && part sft 280 "$PY" bench/gpu_check.py sft
  wants dpo   && part dpo 120 "$PY" bench/gpu_check.py dpo
  wants qlora && part qlora 90 "$PY" bench/gpu_check.py qlora
  wants ablation && part ablation "${ABLATION_S:-420}" "$PY" bench/gpu_ablation.py
else
  for p in sft dpo qlora ablation; do wants $p && { ORDER+=("$p"); STATUS[$p]="skipped (no assets)"; }; done
fi
if wants bench; then
  if [ "${GC_CPU_SMOKE:-0}" = 1 ]; then
    part bench 120 "$PY" bench/train_throughput.py --model-size tiny --examples 24 --max-length 128 --batch-size 4 \
      --steps 2 --warmup 1 --json "$OUT/bench.json"
  else
    part bench 150 "$PY" bench/train_throughput.py --model-size "$BENCH_SIZE" --examples 256 --batch-size 4 --steps 5 --warmup 2 \
      --max-length 4096 --json "$OUT/bench.json"
  fi
fi
if wants generate; then
  if [ "${GC_CPU_SMOKE:-0}" = 1 ]; then
    part generate 120 "$PY" bench/gen_throughput.py --model-size tiny --prompts 8 --new-tokens 8 --samples 2 \
      --padded-batch 4 --json "$OUT/generate.json"
  else
    part generate "${GEN_BUDGET_S:-420}" "$PY" bench/gen_throughput.py --model-size ${GEN_SIZES:-1b 7b} \
      --prompts "${GEN_PROMPTS:-512}" --new-tokens 256 --samples 4 --json "$OUT/generate.json"
    [ -f "$OUT/generate.json" ] && mkdir -p "$REPO/bench/results" && \
      cp "$OUT/generate.json" "$REPO/bench/results/generate-$(date -u +%Y%m%d-%H%M).json"
  fi
fi

GC_STATUS=""
for k in "${ORDER[@]}"; do GC_STATUS+="$k"$'\t'"${STATUS[$k]}"$'\n'; done
export GC_STATUS
"$PY" bench/gpu_check.py summary 2>&1 | tee -a "$LOG"
echo "total $(( $(date +%s) - START ))s; results in $OUT: $(ls "$OUT" | tr '\n' ' ')"
