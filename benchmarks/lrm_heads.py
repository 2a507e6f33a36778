"""What one-model-per-head costs the ``lrm`` scorer, on tiny random Qwen3-VL models (CPU; plumbing, not quality).

    .venv/bin/python -m benchmarks.lrm_heads [--pairs 16] [--reps 5] [--no-record | --results-dir DIR]

Three layouts of the same three heads (default template, prompt-logit answers):
* ``one model``: today's single shared model;
* ``shared base + 3 adapters``: one base copy, each head its own LoRA adapter (the released LRMs' layout);
* ``3 models``: three separate model copies.
Reported per layout: parameters held in memory (unique tensors of the loaded backends) and pairs/s; the printed
ratios are memory(3 models) / memory(shared base + adapters) and speed(shared) / speed(one model). The tiny
model's forward is cheap, so the speed ratio shows the per-head call overhead, not a GPU's. Results go to
``benchmarks/results/lrm_heads.json`` (benchmarks/record.py).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.record import add_record_args, record_from_args, val

TASK = "push the cube to the goal"


def held_params(scorer) -> int:
    seen, n = set(), 0
    for b in scorer._backends:
        for p in b.model.parameters():
            if p.data_ptr() not in seen:
                seen.add(p.data_ptr())
                n += p.numel()
    return n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--reps", type=int, default=5)
    add_record_args(ap)
    args = ap.parse_args(argv)

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from vlmrl.reward_workers.backends.tiny_models import build_tiny_qwen3_vl
    from vlmrl.reward_workers.scorers import build_scorer

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    pairs = [rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8) for _ in range(args.pairs)]
    with tempfile.TemporaryDirectory() as tmp:
        models = [str(build_tiny_qwen3_vl(Path(tmp) / f"m{i}", seed=i)) for i in range(3)]
        adapters = []
        for i in range(3):
            torch.manual_seed(i)
            net = get_peft_model(AutoModelForImageTextToText.from_pretrained(models[0]),
                                 LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                            init_lora_weights=False))
            adapters.append(str(Path(tmp) / f"a{i}"))
            net.save_pretrained(adapters[-1])
        heads = ("progress", "completion", "contrastive")
        layouts = {
            "one model": {"model": models[0]},
            "shared base + 3 adapters": {"model": models[0], "heads": {h: {"adapter": a} for h, a in zip(heads, adapters)}},
            "3 models": {"model": models[0], "heads": {h: {"model": m} for h, m in zip(heads, models)}},
        }
        scorers = {name: build_scorer("lrm", params) for name, params in layouts.items()}
        walls = {name: [] for name in layouts}
        for s in scorers.values():
            s.score_batch([TASK] * 2, pairs[:2])  # warm-up
        for _ in range(args.reps):  # layouts interleaved, so machine load drifts hit all of them alike
            for name, s in scorers.items():
                t0 = time.perf_counter()
                s.score_batch([TASK] * len(pairs), pairs)
                walls[name].append(time.perf_counter() - t0)
        rows = {}
        print(f"{'layout':<26}{'backends':>9}{'params held':>13}{'pairs/s':>9}")
        for name, s in scorers.items():
            rows[name] = {"backends": len(s._backends), "params_held": held_params(s),
                          "pairs_per_s": len(pairs) / float(np.median(walls[name])),
                          "walls_s": [round(w, 4) for w in walls[name]]}
            print(f"{name:<26}{rows[name]['backends']:>9}{rows[name]['params_held']:>13,}"
                  f"{rows[name]['pairs_per_s']:>9.1f}", flush=True)
            s.close()
    mem_ratio = rows["3 models"]["params_held"] / rows["shared base + 3 adapters"]["params_held"]
    speed_ratio = rows["shared base + 3 adapters"]["pairs_per_s"] / rows["one model"]["pairs_per_s"]
    print(f"memory: 3 models / shared base + adapters = {mem_ratio:.2f}x; "
          f"speed: shared base + adapters / one model = {speed_ratio:.2f}x")
    values = {f"{name.replace(' ', '_').replace('+', 'plus')}_{k}": val(v, unit=u)
              for name, row in rows.items() for k, u in (("pairs_per_s", "pairs/s"), ("params_held", "params"))
              for v in [row[k]]}
    values["memory_ratio_3models_over_shared"] = val(mem_ratio, goal="> 1 (sharing saves copies)", unit="ratio")
    values["speed_ratio_shared_over_one_model"] = val(
        speed_ratio, unit="ratio", note="informational: per-head call overhead on a tiny model, not a GPU's")
    record_from_args(args, "lrm_heads", values, seeds=[0], argv=argv,
                     notes=f"tiny random Qwen3-VL, {args.pairs} pairs 64x64, median of {args.reps} interleaved reps; "
                           "walls per rep: " + json.dumps({n: r["walls_s"] for n, r in rows.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
