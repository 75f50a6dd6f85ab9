"""``mixer generate`` throughput per backend: prompts/s and tokens/s of sampling, wall and CPU seconds.

    python bench/generate.py                                   # tiny random Llama + tiny reward model, CPU
    python bench/generate.py --policy runs/sft --reward-model runs/rm --data out/tulu-v2-sample \\
        --backend transformers vllm --n 8 --max-new-tokens 512 --prompts 256   # on a GPU host

Without ``--policy`` it makes the test suite's offline assets (``tests/train/train_fixtures.py``: a 2-layer random
Llama, a local tokenizer, twelve SFT prompts) and trains a reward model for two steps, so the figures measure
the machinery, not a model. Each backend writes to its own temporary folder (deleted unless ``--keep``);
``prompts/s`` and ``tokens/s`` are over the sampling and scoring of the shards (``timings.json``), ``wall_s``
and ``cpu_s`` over the whole run including model loading. A backend that is not installed is reported as
skipped.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "train"))


def tiny_setup(root: Path) -> tuple[str, str, str]:
    """The tiny policy, a reward model trained two steps on the fixture pairs, and the SFT fixture build."""
    from train_fixtures import tiny_assets

    from mixer.train.config import load_config
    from mixer.train.trainer import run

    a = tiny_assets()
    cfg = load_config("rm", REPO / "train" / "tiny-cpu-rm.yaml", ["max_steps=2", "eval_size=0"], model=str(a.model),
                      data=str(a.pref_data), output_dir=str(root / "rm"))
    run(cfg)
    return str(a.model), str(root / "rm"), str(a.sft_data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy")
    parser.add_argument("--reward-model")
    parser.add_argument("--data")
    parser.add_argument("--backend", nargs="+", default=["transformers", "vllm"])
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--prompts", type=int, default=None, help="max prompts")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    import logging

    logging.disable(logging.WARNING)
    from mixer.core.errors import MixerError
    from mixer.generate.backends import package_version
    from mixer.generate.run import GenerateConfig, run_generate

    tmp = Path(tempfile.mkdtemp(prefix="mixer-bench-generate-"))
    if args.policy:
        policy, reward, data = args.policy, args.reward_model, args.data
    else:
        policy, reward, data = tiny_setup(tmp)
    print(f"# {platform.machine()} {platform.processor() or ''} python {platform.python_version()}; torch "
          f"{package_version('torch')}, transformers {package_version('transformers')}, vllm "
          f"{package_version('vllm') or 'not installed'}")
    print(f"# policy {policy}; n {args.n}; max_new_tokens {args.max_new_tokens}")
    print("backend       prompts  tokens  gen_s   prompts/s  tokens/s   wall_s  cpu_s")
    for backend in args.backend:
        out = tmp / f"out-{backend}"
        cfg = GenerateConfig(policy=policy, reward_model=reward, output=str(out), data=data, n=args.n,
                             max_new_tokens=args.max_new_tokens, max_prompts=args.prompts, backend=backend,
                             batch_size=args.batch_size, seed=0)
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            run_generate(cfg)
        except MixerError as e:
            print(f"{backend:<13} skipped: {e}")
            continue
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        t = json.loads((out / "timings.json").read_text())
        print(f"{backend:<13} {t['prompts_generated']:>7} {t['tokens_generated']:>7} {t['generate_s']:>6.2f} "
              f"{t['prompts_per_s']:>10.2f} {t['tokens_per_s']:>9.1f} {wall:>8.2f} {cpu:>6.2f}")
    if args.keep:
        print(f"# outputs kept in {tmp}")
    else:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
