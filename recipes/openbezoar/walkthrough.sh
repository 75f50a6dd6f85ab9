#!/usr/bin/env bash
# OpenBezoar's chain (Dissanayake et al. 2024) with mixer: generate -> judge -> build -> SFT stage by stage
# (each stage's adapter merged before the next) -> SFT on HH-RLHF -> DPO. Paths and configs come from the
# environment; tests/train/test_openbezoar_walkthrough.py runs this very file on the tiny CPU assets.
set -euo pipefail
: "${POLICY:?the model that writes instructions and answers (OpenBezoar: a Falcon-40B instruct variant)}"
: "${JUDGE:=$POLICY}"             # the judge (OpenBezoar: GPT-4)
: "${BASE:?the model to fine-tune (OpenBezoar: OpenLLaMA 3B v2)}"
: "${SEEDS:?a build whose prompts seed Evol-Instruct (OpenBezoar: databricks-dolly-15k)}"
: "${FLAN:?a build of FLAN prompts for Orca (e.g. mixer build recipes/v2-sample.yaml, source flan_v2)}"
: "${HH_RAW:?a folder holding hh_rlhf/<subset>/train.jsonl.gz}"
: "${OUT:?the folder everything is written to}"
SFT_CONFIG="${SFT_CONFIG:-openbezoar-qlora}"      # on a CPU: tiny-cpu with --set use_peft=true (QLoRA needs CUDA)
HH_SFT_CONFIG="${HH_SFT_CONFIG:-openbezoar-hh-sft}"
DPO_CONFIG="${DPO_CONFIG:-openbezoar-dpo}"
read -r -a GEN <<< "${GEN_OPTS:-}"        # e.g. --max-prompts 1000 --max-new-tokens 1024
read -r -a JUDGE_OPTS <<< "${JUDGE_OPTS:---temperature 0}"
read -r -a SFT_SETS <<< "${SFT_SETS:-}"   # e.g. --set use_lora=true --set max_steps=2
read -r -a DPO_SETS <<< "${DPO_SETS:-}"
RECIPES="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# 1. generate: Evol-Instruct over the seed prompts, Orca-style answers over FLAN prompts
mixer generate --method evol-instruct --policy "$POLICY" --data "$SEEDS" -o "$OUT/gen/evol" "${GEN[@]}"
mixer generate --method orca --policy "$POLICY" --data "$FLAN" -o "$OUT/gen/orca" "${GEN[@]}"

# 2. judge every generated pair (a judge_score column; the card reports its quantiles)
mixer generate --method judge --policy "$JUDGE" --data "$OUT/gen/evol/evol_instruct" -o "$OUT/gen/evol-judged" \
    "${JUDGE_OPTS[@]}"
mixer generate --method judge --policy "$JUDGE" --data "$OUT/gen/orca/orca" -o "$OUT/gen/orca-judged" \
    "${JUDGE_OPTS[@]}"

# 3. build one SFT set per scheme, keeping pairs the judge scored at least min_score; HH-RLHF as SFT and DPO
mixer build "$RECIPES/evol.yaml" --raw-dir "$OUT/gen" --out "$OUT/build/evol" -q
mixer build "$RECIPES/orca.yaml" --raw-dir "$OUT/gen" --out "$OUT/build/orca" -q
mixer build "$RECIPES/hh-sft.yaml" --raw-dir "$HH_RAW" --out "$OUT/build/hh-sft" -q
mixer build "$RECIPES/hh-dpo.yaml" --raw-dir "$HH_RAW" --out "$OUT/build/hh-dpo" -q

# 4. SFT stage by stage (Orca, then Evol-Instruct, as OpenBezoar's checkpoint names order them), each adapter
#    merged into its base before the next stage; then SFT on HH-RLHF
model="$BASE"
for stage in orca evol hh-sft; do
    if [ "$stage" = hh-sft ]; then config="$HH_SFT_CONFIG"; else config="$SFT_CONFIG"; fi
    mixer train sft -c "$config" --model "$model" --data "$OUT/build/$stage" -o "$OUT/runs/$stage" \
        "${SFT_SETS[@]}"
    mixer train merge --model "$OUT/runs/$stage" -o "$OUT/runs/$stage-merged"
    model="$OUT/runs/$stage-merged"
done

# 5. DPO on HH-RLHF pairs from the HH-RLHF SFT model
mixer train dpo -c "$DPO_CONFIG" --model "$model" --data "$OUT/build/hh-dpo" -o "$OUT/runs/dpo" "${DPO_SETS[@]}"
