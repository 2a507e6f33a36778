"""Speed of a BT reward-model update step on a frozen LRM encoder, with and without the trainer's feature cache:
``python -m benchmarks.bt_trainer_speed [--encoder-dir DIR]``.

The preference mode's ``RewardModelTrainer`` takes ``train_steps`` gradient steps per iteration over its buffered
labelled pairs. With ``scorer.params.encoder_dir`` only the heads learn, so the frozen encoder's feature of a
buffered frame never changes; the trainer keeps it in a ``FeatureCache`` (``BtRewardModel.cache_features``). This
times the same update steps (same pairs, same minibatches) once with the cache switched off and once with it (steady
state: every buffered frame already encoded once, as after its first iteration in the buffer), in one process,
prints seconds per step of each and their ratio, and checks both trainers end with the same rewards.
Without ``--encoder-dir`` a freshly initialised LRM of ``make demo``'s architecture (64 px, widths 16/32/64, 64-d
features, hashed text) is the encoder: speed does not depend on its weights' values.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch

from benchmarks.compact_lrm import fresh_lrm_dir
from benchmarks.record import add_record_args, record_from_args, val


def _pairs(n: int, frame_size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    frames = [rng.integers(0, 256, (frame_size, frame_size, 3), dtype=np.uint8) for _ in range(2 * n)]
    dense = rng.random(2 * n)
    return [(frames[2 * i], frames[2 * i + 1], "push the cube to the goal", float(dense[2 * i + 1] > dense[2 * i]),
             float(dense[2 * i]), float(dense[2 * i + 1])) for i in range(n)]


def _time_steps(encoder_dir: str, pairs, steps: int, batch: int, ensemble: int, cached: bool):
    from vlmrl.learner.preference.reward_model_trainer import RewardModelTrainer

    trainer = RewardModelTrainer({"encoder_dir": encoder_dir, "ensemble_size": ensemble}, 3e-4, len(pairs), seed=0)
    if not cached:
        trainer.model._feature_cache = None  # what every step did before the cache: encode each minibatch again
    trainer.add_pairs(pairs, heldout=False)
    trainer.train(1, batch)  # warm-up (first allocations)
    task = pairs[0][2]
    if cached:  # steady state: every buffered frame encoded once already, as after its first iteration in a run
        frames = [f for p in pairs for f in p[:2]]
        for i in range(0, len(frames), 256):
            chunk = frames[i:i + 256]
            trainer.model.preprocess(chunk, [task] * len(chunk))
    t0 = time.perf_counter()
    trainer.train(steps, batch)
    per_step = (time.perf_counter() - t0) / steps
    probe = [p[0] for p in pairs[:32]]
    with torch.no_grad():
        r = trainer.model(*trainer.model.preprocess(probe, [task] * len(probe))).numpy()
    return per_step, r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder-dir", default=None, help="compact LRM folder (default: fresh model, make demo's shape)")
    ap.add_argument("--pairs", type=int, default=500, help="buffered labelled pairs (the run's buffer: 80 per "
                                                           "iteration, up to 4,000)")
    ap.add_argument("--steps", type=int, default=10, help="timed update steps per mode")
    ap.add_argument("--batch", type=int, default=64, help="pairs per step (train_pushcube_preference: 64)")
    ap.add_argument("--ensemble", type=int, default=3)
    ap.add_argument("--frame-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    add_record_args(ap)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    tmp = None
    encoder_dir = args.encoder_dir
    if encoder_dir is None:
        tmp = tempfile.TemporaryDirectory()
        encoder_dir = fresh_lrm_dir(tmp.name, image_size=64, widths=[16, 32, 64], embed_dim=64)
    pairs = _pairs(args.pairs, args.frame_size)
    uncached, r_uncached = _time_steps(encoder_dir, pairs, args.steps, args.batch, args.ensemble, cached=False)
    cached, r_cached = _time_steps(encoder_dir, pairs, args.steps, args.batch, args.ensemble, cached=True)
    same = bool(np.allclose(r_uncached, r_cached, rtol=1e-4, atol=1e-5))
    if tmp is not None:
        tmp.cleanup()
    ratio = uncached / cached
    print(f"BT update step, {args.ensemble} members x {args.batch} pairs, {args.pairs} buffered pairs, "
          f"{torch.get_num_threads()} torch thread(s): uncached {uncached:.3f} s, cached {cached:.3f} s, "
          f"ratio {ratio:.1f}x; same rewards after the steps: {same}")
    if not same:
        print("ERROR: the cached trainer's rewards differ from the uncached one's")
    record_from_args(args, "bt_trainer_speed", {
        "seconds_per_step_uncached": val(uncached, unit="s"),
        "seconds_per_step_cached": val(cached, unit="s"),
        "speedup": val(ratio, unit="ratio", note="uncached / cached seconds per update step, same pairs and steps"),
        "same_rewards": val(same)},
        notes=f"{args.ensemble} members x {args.batch} pairs per step, {args.pairs} buffered pairs of "
              f"{args.frame_size} px, {args.steps} timed steps, {torch.get_num_threads()} torch thread(s), encoder "
              f"{args.encoder_dir or 'fresh (make demo shape, hashed text)'}", argv=argv)
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
