"""PairLabeller (no Ray): labels from the tiny-VLM ``preference`` scorer behind a real gRPC server (plumbing only:
the random tiny model's labels carry no meaning), ground-truth labels from ``toy_reach_oracle`` on ToyReach frames,
and label failures counted and reported, never silently dropped."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from vlmrl.envs.toy_reach_env import ToyReachEnv
from vlmrl.learner.preference.frame_buffer import FrameRecord
from vlmrl.learner.preference.labeller import PairLabeller
from vlmrl.reward_workers.client import RewardClient
from vlmrl.reward_workers.scorers import build_scorer
from vlmrl.reward_workers.server import ServerThread
from vlmrl.system.config import ClientConfig, ServerConfig

TASK = "move the white square onto the green disk"


def toy_records(n, seed=0):
    env = ToyReachEnv({"frame_size": 32})
    env.reset(seed=seed)
    out = []
    rng = np.random.default_rng(seed)
    for t in range(n):
        _, _, term, trunc, info = env.step(rng.uniform(-1, 1, 2))
        out.append(FrameRecord(env.render(), TASK, info["env_reward"], "e0", t))
        if term or trunc:
            env.reset(seed=seed + t + 1)
    return out


def serve(name, params):
    st = ServerThread(OmegaConf.structured(ServerConfig(max_wait_ms=1.0)), build_scorer(name, params), "w0")
    st.start()
    return st


def test_tiny_vlm_preference_labeller_plumbing(tiny_vlm_dir):
    srv = serve("preference", {"model": tiny_vlm_dir})
    client = RewardClient(OmegaConf.structured(ClientConfig()), addresses=[srv.address], scorer="preference")
    try:
        recs = toy_records(8)
        batch = PairLabeller(client, batch=3).label([(recs[i], recs[i + 1]) for i in range(6)])
        assert batch.asked == 6 and batch.counts["failed"] == 0 and batch.counts["unknown"] == 0
        kept = batch.counts["first"] + batch.counts["second"]
        assert len(batch.pairs) == kept and kept + batch.counts["none"] == 6
        assert all(p.y in (0.0, 1.0) for p in batch.pairs)
    finally:
        client.close()
        srv.stop(grace_s=0.5)


def test_toy_oracle_labels_prefer_the_frame_closer_to_the_goal():
    srv = serve("toy_reach_oracle", {})
    client = RewardClient(OmegaConf.structured(ClientConfig()), addresses=[srv.address], scorer="toy_reach_oracle")
    try:
        recs = toy_records(40)
        pairs = [(recs[i], recs[j]) for i, j in np.random.default_rng(1).integers(0, 40, (30, 2)) if i != j]
        batch = PairLabeller(client, batch=8).label(pairs)
        assert batch.counts["failed"] == 0 and len(batch.pairs) > 0
        agree = [(p.second.env_reward > p.first.env_reward) == (p.y == 1.0) for p in batch.pairs
                 if abs(p.second.env_reward - p.first.env_reward) > 0.02]
        assert np.mean(agree) > 0.95  # pixel distances vs the env's own distance
    finally:
        client.close()
        srv.stop(grace_s=0.5)


def test_label_failures_are_counted_and_reported(caplog):
    cfg = OmegaConf.structured(ClientConfig(deadline_s=0.5, retry_budget=1, retry_backoff_s=0.05, no_worker_wait_s=1.0))
    client = RewardClient(cfg, addresses=["127.0.0.1:1"], scorer="preference")  # nothing listens there
    try:
        recs = toy_records(4)
        labeller = PairLabeller(client, batch=2, timeout_s=30)
        batch = labeller.label([(recs[0], recs[1]), (recs[2], recs[3]), (recs[1], recs[2])])
        assert batch.counts["failed"] == 3 and not batch.pairs and batch.errors
        assert "RewardUnavailableError" in batch.errors[0]
        assert labeller.totals["failed"] == 3
        assert "3 of 3 pairs failed" in caplog.text
    finally:
        client.close()


def test_compact_lrm_pair_answer_is_an_ai_labeller(tmp_path):
    """The compact LRM served by a reward worker labels pairs (its contrastive output -> first/second/none) through
    the same PairLabeller as the VLM; a random tiny LRM, so plumbing only: the labels follow its own contrastive."""
    from vlmrl.reward_workers.models.compact_lrm import CompactLRM, CompactLRMConfig
    from vlmrl.reward_workers.scorers.compact_lrm import pair_label

    lrm = CompactLRM(CompactLRMConfig(image_size=32, widths=[8, 16], embed_dim=16, text_encoder="hashed"))
    srv = serve("compact_lrm", {"weights_dir": str(lrm.save_pretrained(tmp_path / "lrm")), "label_margin": 0.0})
    client = RewardClient(OmegaConf.structured(ClientConfig()), addresses=[srv.address], scorer="compact_lrm")
    try:
        recs = toy_records(12)
        pairs = [(recs[i], recs[i + 1]) for i in range(11)]
        batch = PairLabeller(client, batch=4).label(pairs)
        assert batch.counts["failed"] == batch.counts["unknown"] == 0 and batch.asked == 11
        answers = client.score(TASK, [np.stack([a.frame, b.frame]) for a, b in pairs], kind="pair")
        assert [r.label for r in answers] == [pair_label(r.components["contrastive"], 0.0) for r in answers]
        assert [p.y for p in batch.pairs] == [float(r.label == "second") for r in answers if r.label != "none"]
    finally:
        client.close()
        srv.stop(grace_s=0.5)
