"""The Bradley-Terry reward model trainer of the preference mode, run as its own Ray actor.

:class:`RewardModelTrainer` holds the :class:`~vlmrl.reward_workers.models.bt_reward_model.BtRewardModel`
(the network the ``bt_reward`` scorer serves), bounded buffers of labelled training and held-out
pairs, and an Adam optimizer. :meth:`train` takes ``steps`` gradient steps of the BT cross-entropy
(:func:`bt_loss`: P[second preferred] = sigmoid(r(second) - r(first)), every ensemble member on its
own random minibatch), then evaluates on the held-out pairs (loss, accuracy, Pearson correlation of
r(s) with the ground-truth dense reward) and names the new weights ``bt-<updates>-<hash>``;
:meth:`weights` returns them as bytes for ``RewardWorkerPool.update_weights``.
:meth:`get_state` / :meth:`load_state` carry everything a resumed run needs (the served weights
bytes and their version, the update count, Adam's state, the sampling RNG, both pair buffers) through
a ``vlmrl train`` checkpoint. Build the actor with :func:`remote_trainer_class`.
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import asdict
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from vlmrl.actors.ground_truth_metrics import pearson
from vlmrl.learner.preference.checkpoint import pack_frames, unpack_frames
from vlmrl.reward_workers.models.bt_reward_model import BtModelParams, BtRewardModel, load_state_bytes, state_to_bytes


def bt_loss(r_first: torch.Tensor, r_second: torch.Tensor, y: torch.Tensor, logit_scale: float = 1.0) -> torch.Tensor:
    """Bradley-Terry cross-entropy of P(second preferred) = sigmoid(logit_scale * (r_second - r_first)): ``y`` = 1
    where the second item is preferred; r_* are (..., B) rewards."""
    return F.binary_cross_entropy_with_logits(logit_scale * (r_second - r_first), y.expand_as(r_first))


def model_params(scorer_params: Mapping[str, Any]) -> BtModelParams:
    """The architecture fields of ``scorer.params`` (the rest: weights, device, belong to the scorer)."""
    from dataclasses import fields

    names = {f.name for f in fields(BtModelParams)}
    return BtModelParams(**{k: (list(v) if isinstance(v, (list, tuple)) else v)
                            for k, v in dict(scorer_params).items() if k in names})


class RewardModelTrainer:
    """Trains the BT reward model on labelled frame pairs (see module doc); one instance per run, in a Ray actor."""

    def __init__(self, scorer_params: Mapping[str, Any], lr: float = 3e-4, max_pairs: int = 10000,
                 seed: int = 0, device: str = "cpu", num_threads: int = 1, normalize_reward: bool = False) -> None:
        if num_threads > 0:
            torch.set_num_threads(int(num_threads))
        self.device = torch.device(device)
        self.model = BtRewardModel(model_params(scorer_params)).to(self.device)
        self.logit_scale = float(self.model.p.logit_scale)  # P(second preferred) = sigmoid(scale * (r2 - r1))
        # every update re-reads the buffered pairs: a frozen encoder's features are computed once per frame
        self.model.cache_features(3 * int(max_pairs))
        self.opt = torch.optim.Adam(self.model.parameters(), lr=float(lr))
        self.rng = np.random.default_rng(seed)
        self.train_pairs: deque = deque(maxlen=int(max_pairs))
        self.heldout_pairs: deque = deque(maxlen=max(1, int(max_pairs) // 4))
        self.normalize_reward = bool(normalize_reward)
        self.updates = 0
        self.version = f"init-{self.model.p.seed}"
        self._state: Optional[bytes] = None

    # ------------------------------------------------------------------ data
    def add_pairs(self, pairs: List[Tuple[np.ndarray, np.ndarray, str, float, float, float]], heldout: bool) -> int:
        """Add labelled pairs ``(first, second, task, y, gt_first, gt_second)``; returns the buffer's size."""
        buf = self.heldout_pairs if heldout else self.train_pairs
        for a, b, task, y, ga, gb in pairs:
            if y not in (0.0, 1.0):
                raise ValueError(f"a preference target must be 0.0 (first) or 1.0 (second), got {y!r}")
            buf.append((np.asarray(a, np.uint8), np.asarray(b, np.uint8), str(task), float(y), float(ga), float(gb)))
        return len(buf)

    def sizes(self) -> Dict[str, int]:
        return {"train_pairs": len(self.train_pairs), "heldout_pairs": len(self.heldout_pairs)}

    def _forward(self, rows) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n = len(rows)
        frames = [r[0] for r in rows] + [r[1] for r in rows]
        tasks = [r[2] for r in rows] * 2
        r = self.model(*self.model.preprocess(frames, tasks, self.device))  # (E, 2n)
        y = torch.tensor([row[3] for row in rows], dtype=torch.float32, device=self.device)
        return r[:, :n], r[:, n:], y

    # ------------------------------------------------------------------ training
    def train(self, steps: int, batch_size: int) -> Dict[str, Any]:
        """``steps`` BT gradient steps, then held-out evaluation; returns the metrics and the new version."""
        if not self.train_pairs:
            raise ValueError("the reward model trainer has no labelled training pairs yet")
        self.model.train()
        losses, accs = [], []
        pairs = list(self.train_pairs)
        e = len(self.model.members)
        for _ in range(int(steps)):
            loss = 0.0
            for m in range(e):  # each member gets its own minibatch (bootstrap-like diversity)
                idx = self.rng.integers(0, len(pairs), size=min(int(batch_size), len(pairs)))
                rows = [pairs[i] for i in idx]
                frames = [r[0] for r in rows] + [r[1] for r in rows]
                x = self.model.preprocess(frames, [r[2] for r in rows] * 2, self.device)
                r = self.model.members[m](*x)
                y = torch.tensor([row[3] for row in rows], dtype=torch.float32, device=self.device)
                lm = bt_loss(r[: len(rows)], r[len(rows):], y, self.logit_scale)
                loss = loss + lm
                accs.append(float(((r[len(rows):] > r[: len(rows)]).float() == y).float().mean()))
            self.opt.zero_grad(set_to_none=True)
            (loss / e).backward()
            self.opt.step()
            losses.append(float(loss.detach()) / e)
        self.model.eval()
        norm = self._set_normalization() if self.normalize_reward else {}
        self.updates += 1
        self._state = state_to_bytes(self.model)
        self.version = f"bt-{self.updates}-{hashlib.sha1(self._state).hexdigest()[:8]}"
        out: Dict[str, Any] = {"version": self.version, "updates": self.updates, "bt_loss": float(np.mean(losses)),
                               "bt_train_acc": float(np.mean(accs)), **self.sizes(), **norm}
        out.update(self.evaluate())
        return out

    @torch.no_grad()
    def _set_normalization(self, max_frames: int = 2048) -> Dict[str, float]:
        """Standardise the served reward over (up to ``max_frames``) frames of the training pairs: the model's
        ``reward_shift`` / ``reward_scale`` become their ensemble-mean reward's mean and std."""
        rows = list(self.train_pairs)
        idx = self.rng.permutation(len(rows))[: max(1, max_frames // 2)]
        frames = [rows[i][k] for i in idx for k in (0, 1)]
        tasks = [rows[i][2] for i in idx for _ in (0, 1)]
        rs = []
        for i in range(0, len(frames), 256):
            rs.append(self.model(*self.model.preprocess(frames[i:i + 256], tasks[i:i + 256], self.device)).mean(0))
        r = torch.cat(rs)
        shift, scale = float(r.mean()), max(float(r.std()) if len(r) > 1 else 1.0, 1e-3)
        self.model.reward_shift.fill_(shift)
        self.model.reward_scale.fill_(scale)
        return {"reward_shift": shift, "reward_scale": scale}

    @torch.no_grad()
    def disagreement(self, rows: List[Tuple[np.ndarray, np.ndarray, str]]) -> List[float]:
        """Per pair ``(first, second, task)``: the std over ensemble members of P(second preferred) (PEBBLE's
        disagreement-based query selection; 0 for a one-member model)."""
        self.model.eval()
        out: List[float] = []
        for i in range(0, len(rows), 128):
            chunk = rows[i:i + 128]
            n = len(chunk)
            r = self.model(*self.model.preprocess([c[0] for c in chunk] + [c[1] for c in chunk],
                                                  [c[2] for c in chunk] * 2, self.device))
            p_second = torch.sigmoid(self.logit_scale * (r[:, n:] - r[:, :n]))
            out += p_second.std(0, unbiased=False).tolist()
        return out

    @torch.no_grad()
    def evaluate(self, rows: Optional[list] = None) -> Dict[str, Any]:
        """BT loss/accuracy on held-out pairs (ensemble mean) and Pearson(r(s), ground-truth dense reward)."""
        rows = list(self.heldout_pairs) if rows is None else rows
        if not rows:
            return {}
        self.model.eval()
        losses, correct, rs, gts = [], 0, [], []
        for i in range(0, len(rows), 128):
            chunk = rows[i:i + 128]
            ra, rb, y = self._forward(chunk)
            ra, rb = ra.mean(0), rb.mean(0)
            losses.append(float(bt_loss(ra, rb, y, self.logit_scale)) * len(chunk))
            correct += int(((rb > ra).float() == y).sum())
            rs += ra.tolist() + rb.tolist()
            gts += [r[4] for r in chunk] + [r[5] for r in chunk]
        out = {"bt_heldout_loss": sum(losses) / len(rows), "bt_heldout_acc": correct / len(rows)}
        c = pearson(rs, gts)
        if c is not None:
            out["heldout_pearson_reward_vs_dense"] = c
        return out

    def weights(self) -> Tuple[str, bytes]:
        """``(version, state_dict bytes)`` of the newest weights (what the reward workers hot-swap in)."""
        if self._state is None:
            self._state = state_to_bytes(self.model)
        return self.version, self._state

    # ------------------------------------------------------------------ checkpoint
    def get_state(self) -> Dict[str, Any]:
        """Everything :meth:`load_state` needs to continue exactly here (see module doc)."""
        version, weights = self.weights()
        arch = asdict(self.model.p)

        def pairs(buf) -> Dict[str, Any]:
            rows = list(buf)
            return {"first": pack_frames([r[0] for r in rows]), "second": pack_frames([r[1] for r in rows]),
                    "task": [r[2] for r in rows], "y": [r[3] for r in rows], "gt_first": [r[4] for r in rows],
                    "gt_second": [r[5] for r in rows]}

        return {"version": version, "weights": weights, "updates": self.updates, "arch": arch,
                "optimizer": self.opt.state_dict(), "rng": self.rng.bit_generator.state,
                "train_pairs": pairs(self.train_pairs), "heldout_pairs": pairs(self.heldout_pairs)}

    def load_state(self, state: Mapping[str, Any]) -> Tuple[str, int]:
        """Restore :meth:`get_state` output (architecture must match; the buffers keep their current bounds).

        Returns ``(version, updates)``; :meth:`weights` then returns the very bytes that were served.
        """
        mine = {k: v for k, v in asdict(self.model.p).items() if k != "seed"}
        theirs = {k: v for k, v in dict(state["arch"]).items() if k != "seed"}
        if mine != theirs:
            raise ValueError(f"the checkpointed reward model has architecture {theirs}, scorer.params now give {mine}; "
                             f"resume with the same scorer.params")
        weights = bytes(state["weights"])
        load_state_bytes(self.model, weights)
        self.model.eval()
        self.opt.load_state_dict(state["optimizer"])
        self.rng.bit_generator.state = state["rng"]
        for buf, packed in ((self.train_pairs, state["train_pairs"]), (self.heldout_pairs, state["heldout_pairs"])):
            buf.clear()
            cols = (unpack_frames(packed["first"]), unpack_frames(packed["second"]), packed["task"], packed["y"],
                    packed["gt_first"], packed["gt_second"])
            for a, b, task, y, ga, gb in zip(*cols):
                buf.append((a, b, str(task), float(y), float(ga), float(gb)))
        self.updates = int(state["updates"])
        self.version = str(state["version"])
        self._state = weights
        return self.version, self.updates


def remote_trainer_class(num_cpus: float = 0.0, num_gpus: float = 0.0):
    """:class:`RewardModelTrainer` as a Ray actor class (its own process, so training never blocks the driver)."""
    import ray

    return ray.remote(num_cpus=float(num_cpus), num_gpus=float(num_gpus), max_restarts=0)(RewardModelTrainer)
