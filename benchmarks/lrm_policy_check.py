"""Does a compact LRM pay for what a trained policy does? Score the policy's own greedy episodes with LRMs:

    .venv/bin/python -m benchmarks.lrm_policy_check RUN_DIR LRM_DIR [LRM_DIR ...] [--episodes 5]

``RUN_DIR``: a ``vlmrl train`` run (its ``config.yaml`` gives the env; its last checkpoint the policy).
Each greedy episode (seeds ``lrm_refine.eval_seed + i``, as the benchmarks' evaluation) is rendered with the
run's frame size and stride; each LRM scores its (previous, current) frame pairs, as the reward workers do.
Printed per LRM: mean completion / last-frame completion and progress over the episodes that end in
ground-truth success and over those that do not, and the Pearson correlation of its frame completion with
the env's dense reward. A policy that exploits an LRM shows up as high completion on failed episodes.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Dict, List

import numpy as np

from benchmarks.record import add_record_args, record_from_args, topic_part, val

os.environ.setdefault("OMP_NUM_THREADS", "1")


def rollout(module, env, seed: int):
    """(frames, dense env reward at each frame's state, task text, success at the end) of one greedy episode."""
    from vlmrl.envs import info_keys as K
    from vlmrl.learner.online.lrm_refine import greedy_episode

    infos = list(greedy_episode(module, env, seed))
    framed = [i for i in infos if i.get(K.HAS_FRAME)]
    return ([i[K.FRAME] for i in framed], np.asarray([i[K.ENV_REWARD] for i in framed]), infos[-1][K.TASK_TEXT],
            bool(infos[-1][K.SUCCESS]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("lrm_dirs", nargs="+")
    p.add_argument("--episodes", type=int, default=5)
    p.add_argument("--strip", default=None, metavar="PNG",
                   help="also save the first episode's frames (every 2nd frame) side by side as a PNG")
    add_record_args(p, "result file name (default: lrm_policy_check_<run folder's parent>_<run folder>)")
    args = p.parse_args(argv)

    from omegaconf import OmegaConf

    from vlmrl.actors.ground_truth_metrics import pearson
    from vlmrl.envs.maniskill_env import make_env
    from vlmrl.learner.online.lrm_refine import final_policy
    from vlmrl.reward_workers.scorers.base import build_scorer

    run_dir = Path(args.run_dir)
    cfg = OmegaConf.load(run_dir / "config.yaml")
    try:
        module = final_policy(run_dir)
    except FileNotFoundError as e:
        p.error(str(e))
    env_cfg = OmegaConf.to_container(cfg.env, resolve=True)
    env_cfg["capture_frames"] = True
    env = make_env(env_cfg)
    episodes = [rollout(module, env, int(cfg.lrm_refine.eval_seed) + i) for i in range(args.episodes)]
    env.close()
    if args.strip:
        from PIL import Image

        frames = episodes[0][0][::2]
        Image.fromarray(np.concatenate(frames, axis=1)).save(args.strip)
        print(f"frames of episode 0 (every 2nd frame of stride {env_cfg['frame_stride']}): {args.strip}")
    wins = sum(ok for *_, ok in episodes)
    print(f"{run_dir}: {args.episodes} greedy episodes, {wins} end in ground-truth success "
          f"(end_on_success={env_cfg.get('end_on_success', True)})")
    values = {"greedy_success": val(wins / args.episodes, unit="success rate", note=f"{args.episodes} greedy episodes")}
    for n, lrm in enumerate(args.lrm_dirs):
        scorer = build_scorer("compact_lrm", {"weights_dir": lrm})
        rows: Dict[bool, List[tuple]] = {True: [], False: []}
        comp_all, dense_all = [], []
        for frames, dense, task, ok in episodes:
            pairs = [np.stack([frames[max(i - 1, 0)], frames[i]]) for i in range(len(frames))]
            res = scorer.score_batch([task] * len(pairs), pairs)
            comp = np.array([r.components["completion"] for r in res])
            prog = np.array([r.components["progress"] for r in res])
            rows[ok].append((comp.mean(), comp[-1], prog[-1]))
            comp_all.extend(comp)
            dense_all.extend(dense)
        corr = pearson(comp_all, dense_all)
        print(f"  LRM {lrm}: corr(completion, dense env reward) {'n/a' if corr is None else f'{corr:+.2f}'}")
        values[f"lrm{n}_corr_completion_dense"] = val(corr, unit="pearson", note=f"LRM {lrm}")
        for ok, name in ((False, "failed"), (True, "successful")):
            if rows[ok]:
                m = np.mean(rows[ok], axis=0)
                print(f"    {name} episodes ({len(rows[ok])}): completion mean {m[0]:.2f}, last frame {m[1]:.2f}; "
                      f"progress last frame {m[2]:.2f}")
                values[f"lrm{n}_{name}_completion_last_frame"] = val(m[1], note=f"{len(rows[ok])} episodes")
                values[f"lrm{n}_{name}_progress_last_frame"] = val(m[2], note=f"{len(rows[ok])} episodes")
    topic = f"lrm_policy_check_{topic_part(run_dir.resolve().parent.name)}_{topic_part(run_dir.resolve().name)}"
    record_from_args(args, topic, values, notes=f"run {run_dir}; LRMs {args.lrm_dirs}; episodes from env seed "
                                               f"{int(cfg.lrm_refine.eval_seed)}", argv=argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
