"""Throughput of the ``compact_lrm`` scorer vs batch size: ``python -m benchmarks.compact_lrm [--weights-dir DIR]``.

Times ``score_batch`` in-process (no gRPC) on random uint8 (previous, current) frame pairs of
``--frame-size`` px, for batch sizes 1, 8, 32, 128, and prints items/s (one item = one reward for
one current frame; the CNN encodes both frames of the pair). Without ``--weights-dir`` a freshly
initialised model of the default architecture (hashed text encoder) is used: speed does not
depend on the weights' values.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch

from benchmarks.record import add_record_args, record_from_args, val


def fresh_lrm_dir(directory: str, **config) -> str:
    """A compact LRM with random weights (seed 0, hashed text encoder unless ``config`` says otherwise) saved in
    ``directory``: for speed benchmarks, whose timings do not depend on the weights' values."""
    from vlmrl.reward_workers.models.compact_lrm import CompactLRM, CompactLRMConfig

    torch.manual_seed(0)
    return str(CompactLRM(CompactLRMConfig(**{"text_encoder": "hashed", **config})).save_pretrained(directory))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights-dir", default=None, help="trained compact LRM folder (default: fresh model)")
    ap.add_argument("--image-size", type=int, default=64, help="model input size for the fresh model")
    ap.add_argument("--frame-size", type=int, default=128, help="size of the incoming frames (resized by the scorer)")
    ap.add_argument("--batch-sizes", default="1,8,32,128")
    ap.add_argument("--seconds", type=float, default=3.0, help="time per batch size")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    ap.add_argument("--device", default="cpu")
    add_record_args(ap, "result file name (default: compact_lrm_throughput, _trained with --weights-dir)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from vlmrl.reward_workers.scorers.base import build_scorer

    tmp = None
    weights_dir = args.weights_dir
    if weights_dir is None:
        tmp = tempfile.TemporaryDirectory()
        weights_dir = fresh_lrm_dir(tmp.name, image_size=args.image_size)
    scorer = build_scorer("compact_lrm", {"weights_dir": weights_dir, "device": args.device})
    cfg = scorer.model.config
    n_params = sum(p.numel() for p in scorer.model.parameters())
    print(f"compact_lrm: {n_params / 1e6:.2f} M params, model input {cfg.image_size}px, widths {list(cfg.widths)}, "
          f"frames {args.frame_size}px, device {args.device}, torch threads {torch.get_num_threads()}")
    rng = np.random.default_rng(0)
    print(f"{'batch':>6} {'items/s':>10} {'frames encoded/s':>17} {'ms/batch':>9}")
    values = {}
    for bs in [int(b) for b in args.batch_sizes.split(",")]:
        items = [rng.integers(0, 256, (2, args.frame_size, args.frame_size, 3), dtype=np.uint8) for _ in range(bs)]
        tasks = ["push the cube to the goal"] * bs
        for _ in range(2):
            scorer.score_batch(tasks, items)
        calls, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < args.seconds or calls < 3:
            scorer.score_batch(tasks, items)
            calls += 1
        dt = time.perf_counter() - t0
        print(f"{bs:>6} {bs * calls / dt:>10.1f} {2 * bs * calls / dt:>17.1f} {1000 * dt / calls:>9.1f}")
        values[f"items_per_s_batch{bs}"] = val(bs * calls / dt, unit="items/s", note="one item = one (previous, "
                                               "current) pair = one reward")
    if tmp is not None:
        tmp.cleanup()
    record_from_args(args, "compact_lrm_throughput" + ("_trained" if args.weights_dir else ""), values,
                     notes=f"{n_params / 1e6:.2f} M params, model input {cfg.image_size} px, frames {args.frame_size} "
                           f"px, device {args.device}, {torch.get_num_threads()} torch thread(s), weights "
                           f"{args.weights_dir or 'fresh (hashed text encoder)'}", argv=argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
