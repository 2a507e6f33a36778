"""Reward audit (learner/reward_training/reward_audit.py, vlmrl audit-reward) and the object-aware LRM progress targets."""

import json

import numpy as np
import pytest

from vlmrl.envs.dataset import Episode
from vlmrl.learner.reward_training.lrm_data import TargetRule, progress_targets
from vlmrl.learner.reward_training.reward_audit import (ScoredEpisode, dense_order, format_summary, gate, over_paid,
                                                       plot_progress, score_episode, summarise)


def _rec(behaviour, category, success, last_p, last_c=None, seed=0):
    steps = np.arange(0, 11, 5)
    prog = np.linspace(0, last_p, len(steps))
    comp = None if last_c is None else np.linspace(0, last_c, len(steps))
    return ScoredEpisode(behaviour, category, seed, success, steps, prog, comp, "progress")


def test_summary_margins_accidental_successes_and_gate():
    recs = [_rec("solve", "success", True, 0.9, 0.95), _rec("solve", "success", True, 0.7, 0.9),
            _rec("solve", "success", False, 0.1, 0.1),  # a failed solve is not a reference
            _rec("arm_to_goal", "non_progress", False, 0.6, 0.7), _rec("arm_to_goal", "non_progress", False, 0.2, 0.1),
            _rec("arm_to_goal", "non_progress", True, 0.95, 0.9),  # reached the goal by accident: left out
            _rec("idle", "non_progress", False, 0.05, 0.0)]
    s = summarise(recs, 0.5, trained_on=["idle"])
    assert s["success_progress"] == pytest.approx(0.8) and s["success_episodes"] == 2
    a = s["behaviours"]["arm_to_goal"]
    assert a["counted_episodes"] == 2 and a["accidental_successes"] == 1 and a["true_success"] == pytest.approx(1 / 3)
    assert a["last_progress"] == pytest.approx(0.4) and a["exploit_margin"] == pytest.approx(0.5)
    assert a["complete_share"] == pytest.approx(0.5) and a["last_progress_max"] == pytest.approx(0.6)
    assert s["behaviours"]["idle"]["in_training_data"] and not a["in_training_data"]
    bad = gate(s, max_margin=0.3, max_complete_share=0.0)
    assert bad == ["arm_to_goal: exploit margin 0.50 > 0.3", "arm_to_goal: called complete in 50% of episodes > 0%"]
    assert gate(s, max_margin=0.6, max_complete_share=0.5) == []
    table = format_summary("PushCube-v1", s)
    assert "arm_to_goal" in table and "0.50" in table
    # no successful reference: the gate says so instead of dividing by nothing
    assert "no successful episode" in gate(summarise(recs[3:]), 0.3, 0.0)[0]


def _dense_rec(behaviour, category, dense, progress, seed=0):
    steps = np.arange(len(dense)) * 4
    return ScoredEpisode(behaviour, category, seed, category == "success", steps, np.asarray(progress, float), None,
                         "progress", dense=np.asarray(dense, float))


def test_dense_order_measures_the_scorers_ranking_against_the_env_dense_reward():
    # the env's dense reward: solve climbs to 1, reaching the push pose earns 0.3, an arm on the goal 0.05
    solve = [_dense_rec("solve", "success", [0.0, 0.3, 0.6, 1.0], [0.0, 0.2, 0.6, 0.95], seed=k) for k in range(3)]
    reach = [_dense_rec("near_miss_stop_short", "non_progress", [0.0, 0.2, 0.3, 0.3], [0.0, 0.05, 0.08, 0.08], seed=k)
             for k in range(3)]
    arm_goal = [_dense_rec("arm_to_goal", "non_progress", [0.0, 0.02, 0.05, 0.05], [0.0, 0.1, 0.2, 0.25], seed=k)
                for k in range(3)]
    o = dense_order(solve + reach + arm_goal)
    # every solve-vs-other last-frame pair is right, every reach-vs-arm_to_goal pair reversed: 18 of 27 right
    assert o["last_frame_pairs"] == 27 and o["last_frame_agreement"] == pytest.approx(18 / 27)
    assert o["misordered"] == [{"higher": "near_miss_stop_short", "lower": "arm_to_goal", "reversed_share": 1.0,
                                "pairs": 9}]
    assert 0.5 < o["frame_agreement"] < 1.0 and o["frame_pairs"] > 1000
    # a scorer that ranks like the dense reward agrees on every pair; ties in dense are left out
    same = [_dense_rec(r.behaviour, r.category, r.dense, r.dense, r.seed) for r in solve + reach + arm_goal]
    o2 = dense_order(same)
    assert o2["frame_agreement"] == 1.0 and o2["last_frame_agreement"] == 1.0 and o2["misordered"] == []
    # a constant scorer ties every pair: half
    flat = [_dense_rec(r.behaviour, r.category, r.dense, np.zeros(4), r.seed) for r in solve + reach]
    assert dense_order(flat)["frame_agreement"] == 0.5
    # the summary carries it, the table prints it, the gate uses it only when asked
    s = summarise(solve + reach + arm_goal)
    assert s["dense_order"]["last_frame_agreement"] == pytest.approx(18 / 27)
    assert s["behaviours"]["near_miss_stop_short"]["last_dense"] == pytest.approx(0.3)
    table = format_summary("PushCube-v1", s)
    assert "order vs the env's dense reward" in table and "reversed: near_miss_stop_short" in table
    assert gate(s, 0.3, 0.0) == []
    bad = gate(s, 0.3, 0.0, min_dense_agreement=0.95)
    assert len(bad) == 1 and bad[0].startswith("frame pairs ordered like the env's dense reward: 0.")
    assert gate(summarise(same), 0.3, 0.0, min_dense_agreement=0.95) == []
    # no dense values recorded: nothing to order by, and a gate that asks for it says so
    bare = [_rec("solve", "success", True, 0.9), _rec("idle", "non_progress", False, 0.1)]
    assert summarise(bare)["dense_order"] is None
    assert "no frame pairs carry a dense reward" in gate(summarise(bare), 0.3, 0.0, min_dense_agreement=0.5)[0]


def test_episodes_whose_object_really_moved_to_the_goal_are_left_out_as_real_progress():
    def rec(behaviour, category, success, last_p, obj, last_c=None):
        r = _rec(behaviour, category, success, last_p, last_c)
        r.object_progress = obj
        return r

    recs = [rec("solve", "success", True, 0.9, 0.8, 0.9), rec("solve", "success", True, 0.9, 0.8, 0.9),
            # a wrong-goal push whose cube stopped at the goal's edge (half-way): the scorer pays, rightly
            rec("wrong_goal", "non_progress", False, 0.8, 0.5, 0.9),
            rec("wrong_goal", "non_progress", False, 0.09, -0.4, 0.0),  # pushed away: counted
            rec("arm_only", "non_progress", False, 0.6, 0.0, 0.7)]  # looks done, object never moved: an exploit
    s = summarise(recs, 0.5, real_progress_share=0.3)
    assert s["success_object_progress"] == pytest.approx(0.8) and s["real_progress_bar"] == pytest.approx(0.24)
    w = s["behaviours"]["wrong_goal"]
    assert w["counted_episodes"] == 1 and w["accidental_progress"] == 1
    assert w["exploit_margin"] == pytest.approx(0.1)
    assert w["exploit_margin_all"] == pytest.approx((0.8 + 0.09) / 2 / 0.9)
    assert w["complete_share"] == 0.0
    assert gate(s, 0.3, 0.0) == ["arm_only: exploit margin 0.67 > 0.3",
                                 "arm_only: called complete in 100% of episodes > 0%"]
    assert "left out as real progress" in format_summary("PushCube-v1", s)
    # without the ground-truth check every failed episode counts, as before
    s0 = summarise(recs, 0.5)
    assert s0["behaviours"]["wrong_goal"]["counted_episodes"] == 2 and s0["real_progress_bar"] is None
    assert any(b.startswith("wrong_goal") for b in gate(s0, 0.3, 0.0))


def test_over_paid_lists_the_episodes_the_gate_counts_against_the_scorer():
    def rec(behaviour, category, success, last_p, obj, last_c=None, seed=0):
        r = _rec(behaviour, category, success, last_p, last_c, seed)
        r.object_progress = obj
        return r

    recs = [rec("solve", "success", True, 0.9, 0.8, 0.9), rec("solve", "success", True, 0.9, 0.8, 0.9),
            rec("wrong_goal", "non_progress", False, 0.8, 0.5, 0.9),  # really moved: paying it is right
            rec("wrong_goal", "non_progress", False, 0.09, -0.4, 0.0),  # paid little: nothing to learn
            rec("overshoot", "non_progress", True, 0.95, 0.9, 0.9),  # accidental success
            rec("overshoot", "non_progress", False, 0.2, -0.2, 0.8, seed=7),  # called complete, margin 0.22
            rec("arm_only", "non_progress", False, 0.6, 0.0, 0.1, seed=9)]  # margin 0.67
    mined = over_paid(recs, max_margin=0.3, complete_threshold=0.5, real_progress_share=0.3)
    assert [(r.behaviour, r.seed) for r in mined] == [("overshoot", 7), ("arm_only", 9)]
    # the same episodes the gate counts: without the ground-truth check the half-way wrong-goal push counts too
    assert [r.behaviour for r in over_paid(recs, 0.3)] == ["wrong_goal", "overshoot", "arm_only"]
    assert over_paid(recs[2:], 0.3) == []  # no successful reference: nothing is judged


def test_scorers_without_completion_report_none_and_plot(tmp_path):
    r = _rec("idle", "non_progress", False, 0.1)
    s = summarise([_rec("solve", "success", True, 0.5), r])
    assert s["behaviours"]["idle"]["complete_share"] is None and s["behaviours"]["idle"]["last_completion"] is None
    assert gate(s, 0.3, 0.0) == []
    plot_progress({"PushCube-v1": [r]}, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000


def _episode(obj_x, success, env_id="PushCube-v1", meta=None):
    """An episode whose object moves along x towards a goal at x = 0.3 (PushCube state layout)."""
    T = len(obj_x) - 1
    states = np.zeros((T + 1, 35), np.float32)
    states[:, 28] = obj_x
    states[:, 25] = 0.3
    return Episode(task="push", env_id=env_id, frames=np.zeros((T + 1, 8, 8, 3), np.uint8),
                   frame_steps=np.arange(T + 1, dtype=np.int32), states=states, actions=np.zeros((T, 7), np.float32),
                   rewards=np.zeros(T, np.float32), success=np.asarray(success, bool), meta=meta or {})


def test_object_aware_targets_pay_only_for_object_progress():
    rule0 = TargetRule(failed_progress_scale=0.0)
    rule = TargetRule(failed_progress_scale=0.0, object_progress_weight=0.5)
    # demo: 4 approach steps (cube still), then the cube moves onto the goal
    demo = _episode([0.0] * 5 + [0.1, 0.2, 0.3, 0.3], [False] * 7 + [True, True])
    t0, t = progress_targets(demo, rule0), progress_targets(demo, rule)
    np.testing.assert_allclose(t0, np.minimum(np.arange(9) / 7, 1), atol=1e-6)
    assert t[4] == pytest.approx(0.5 * 4 / 7)  # approach: half the time credit, no object credit
    assert t[6] == pytest.approx(0.5 * 6 / 7 + 0.5 * (1 - 0.1 / 0.3))
    assert t[7] == t[8] == 1.0
    # arm-only: the cube never moves -> 0 everywhere, under both rules
    assert not progress_targets(_episode([0.0] * 9, [False] * 9), rule).any()
    # wrong direction: the object gets further away -> 0; half-way push that stops -> half the object credit
    assert not progress_targets(_episode(np.linspace(0, -0.2, 9), [False] * 9), rule).any()
    assert progress_targets(_episode([0.0, 0.15, 0.15], [False] * 3), rule)[-1] == pytest.approx(0.25)
    # overshoot: success, then the object leaves the goal -> no time credit after it left
    over = progress_targets(_episode([0.0, 0.3, 0.6], [False, True, False]), rule)
    assert over[1] == 1.0 and over[2] == 0.0
    assert progress_targets(_episode([0.0, 0.3, 0.6], [False, True, False]), rule0)[2] == 1.0  # the time rule's flaw
    with pytest.raises(ValueError, match="object_progress_weight"):
        TargetRule(object_progress_weight=1.5)


def test_state_targets_agree_between_a_demos_approach_and_an_arm_only_episode():
    rule = TargetRule(failed_progress_scale=0.0, object_progress_weight=0.8, reach_progress_weight=0.2)

    def with_tcp(ep, tcp_x):
        ep.states[:, 18] = tcp_x  # tcp x (PushCube layout); the object starts at x = 0, 0.2 m from the tcp
        return ep

    tcp = [-0.2, -0.15, -0.1, -0.05, -0.02]
    demo = with_tcp(_episode([0.0] * 5 + [0.1, 0.2, 0.3, 0.3], [False] * 7 + [True, True]),
                    tcp + [0.08, 0.18, 0.28, 0.28])
    arm_only = with_tcp(_episode([0.0] * 5, [False] * 5), tcp)
    t_demo, t_arm = progress_targets(demo, rule), progress_targets(arm_only, rule)
    np.testing.assert_allclose(t_demo[:5], t_arm, atol=1e-6)  # same pose, same target: no time term
    np.testing.assert_allclose(t_arm, 0.2 * np.array([0.0, 0.25, 0.5, 0.75, 0.9]), atol=1e-6)  # reach earns <= r
    assert t_demo[6] == pytest.approx(0.8 * (1 - 0.1 / 0.3) + 0.2 * 0.9)  # pushing: the object's credit on top
    assert t_demo[7] == t_demo[8] == 1.0
    # the time rule (object weight 0.5) gives the demo's approach time credit the arm-only episode never gets
    half = TargetRule(failed_progress_scale=0.0, object_progress_weight=0.5)
    assert progress_targets(demo, half)[4] > 0.2 and not progress_targets(arm_only, half).any()
    with pytest.raises(ValueError, match="reach_progress_weight"):
        TargetRule(object_progress_weight=0.9, reach_progress_weight=0.2)


def test_score_episode_uses_the_scorers_item_kind():
    from vlmrl.learner.reward_training.reward_eval import scorer_predictor
    from vlmrl.reward_workers.scorers import build_scorer

    ep = _episode([0.0] * 5, [False] * 5, meta={"behaviour": "idle", "category": "non_progress"})
    ep.frames = np.random.default_rng(0).integers(0, 255, (5, 32, 32, 3), dtype=np.uint8)
    rec = score_episode(ep, scorer_predictor(build_scorer("cnn", {}), batch_size=2))
    assert rec.behaviour == "idle" and rec.value_name == "progress" and rec.progress.shape == (5,)
    assert rec.completion is None and not rec.success
    assert rec.object_progress == pytest.approx(0.0)  # ground truth from the states: the object never moved
    moved = _episode([0.0, 0.1, 0.15], [False] * 3, meta={"behaviour": "wrong_goal", "category": "non_progress"})
    moved.frames = np.zeros((3, 32, 32, 3), np.uint8)
    rec_moved = score_episode(moved, scorer_predictor(build_scorer("cnn", {}), batch_size=2))
    assert rec_moved.object_progress == pytest.approx(0.5)
    # the env's dense reward at each scored frame's state travels with the record (frame k: the reward of step k)
    moved.rewards = np.array([0.2, 0.4], np.float32)
    rec_dense = score_episode(moved, scorer_predictor(build_scorer("cnn", {}), batch_size=2))
    assert rec_dense.dense.tolist() == pytest.approx([0.2, 0.2, 0.4])


def _cli(tmp_path, *overrides):
    from vlmrl.system.cli import main

    flags = [o for o in overrides if o.startswith("--")]
    return main(["audit-reward", *flags, "demo", f"output_dir={tmp_path}", *[o for o in overrides if o not in flags]])


def test_bad_input_is_one_line_naming_the_fix(tmp_path, capsys):
    assert _cli(tmp_path, "audit.tasks=[NoSuchTask-v9]") == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unknown task 'NoSuchTask-v9'" in err and "audit.tasks" in err
    assert _cli(tmp_path, "audit.tasks=[StackCube-v1]") == 2
    assert "no scripted controller for StackCube-v1" in capsys.readouterr().err
    assert _cli(tmp_path, f"scorer.params.weights_dir={tmp_path}/missing") == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "weights_dir" in err and "vlmrl lrm-train" in err
    assert _cli(tmp_path, "scorer.name=cnn", "scorer.params={}", "reward.item_kind=pair") == 2
    err = capsys.readouterr().err.strip()
    assert "reward.item_kind=pair but scorer 'cnn' takes frame items" in err and "\n" not in err
    assert _cli(tmp_path, "audit.behaviours=[moonwalk]") == 2
    assert "unknown behaviour" in capsys.readouterr().err


def test_audit_seeds_must_be_held_out(tmp_path, capsys):
    from vlmrl.envs.dataset import EpisodeWriter

    ep = _episode([0.0] * 3, [False] * 3)
    ep.seed = 1_000_004
    EpisodeWriter(tmp_path / "demos").write(ep)
    assert _cli(tmp_path, "run_name=x", f"lrm_train.dataset_dirs=[{tmp_path}/demos]", "scorer.name=cnn",
                "scorer.params={}", "reward.item_kind=auto") == 2
    assert "audit seeds 1000004.. were used" in capsys.readouterr().err


@pytest.mark.slow
def test_audit_end_to_end_with_a_frame_scorer(tmp_path):
    """Real rollouts + a real (random-weight) scorer: the command writes its report and gates on it."""
    rc = _cli(tmp_path, "scorer.name=cnn", "scorer.params={}", "reward.item_kind=auto", "env.frame_size=32",
              "audit.behaviours=[solve,arm_to_goal]", "audit.episodes_per_behaviour=1", "audit.frame_stride=10",
              "audit.max_margin=100", "audit.max_complete_share=1")
    report = json.loads((tmp_path / "demo" / "audit" / "audit.json").read_text())
    b = report["tasks"]["PushCube-v1"]["behaviours"]
    assert set(b) == {"solve", "arm_to_goal"} and b["solve"]["true_success"] == 1.0
    assert rc == (0 if report["passed"] else 1) and (tmp_path / "demo" / "audit" / "progress_over_time.png").exists()


def test_scoring_through_reward_workers_builds_the_same_items(tmp_path):
    """audit.workers=local: the episode goes through a gRPC reward worker (ClientScorer) instead of in-process."""
    from vlmrl.learner.labels.label_workers import open_label_workers
    from vlmrl.learner.reward_training.reward_audit import ClientScorer
    from vlmrl.learner.reward_training.reward_eval import scorer_predictor
    from vlmrl.system.config import load_config

    cfg = load_config(None, ["scorer.name=cnn", "label.workers=local", "pool.num_workers=1"])
    ep = _episode([0.0] * 4, [False] * 4, meta={"behaviour": "idle", "category": "non_progress"})
    ep.frames = np.random.default_rng(1).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    with open_label_workers(cfg) as workers:
        remote = ClientScorer(workers.client, workers.item_kind)
        assert remote.item_kind.value == "frame" and remote.frames_per_item == 1
        rec = score_episode(ep, scorer_predictor(remote, batch_size=3))
    assert rec.progress.shape == (4,) and np.isfinite(rec.progress).all() and rec.value_name == "progress"


def test_demo_prints_the_audit_verdict_in_one_line(tmp_path):
    from vlmrl.system.demo_pipeline import DemoPipeline

    pipe = DemoPipeline("demo", [f"output_dir={tmp_path}"], print_fn=lambda m: None)
    s = summarise([_rec("solve", "success", True, 0.8), _rec("arm_to_goal", "non_progress", False, 0.4, 0.6),
                   _rec("idle", "non_progress", False, 0.08, 0.1)])
    s["violations"] = gate(s, 0.3, 0.0)
    out = tmp_path / "demo" / "audit"
    out.mkdir(parents=True)
    (out / "audit.json").write_text(json.dumps({"passed": False, "tasks": {"PushCube-v1": s}}))
    line = pipe._audit_line()
    assert line.startswith("FAILED") and "worst exploit margin 0.50 (arm_to_goal)" in line
    assert "most called complete 100%" in line and "2 threshold(s) exceeded" in line


def test_mine_negatives_writes_the_over_paid_training_episodes(tmp_path, capsys):
    """--mine-negatives: real rollouts on training seeds, a real (random-weight) scorer; with max_margin -1 every
    judged non-progress episode is over-paid, so exactly those are written, with ground truth, for lrm-train."""
    from vlmrl.envs.dataset import read_index

    mined = tmp_path / "mined"
    common = ["scorer.name=cnn", "scorer.params={}", "reward.item_kind=auto", "env.frame_size=32",
              "audit.behaviours=[solve,idle]", "audit.negatives_frame_stride=10", f"audit.mined_dir={mined}"]
    assert _cli(tmp_path, "--mine-negatives", *common, "audit.mine_per_behaviour=0") == 2
    assert "audit.mine_per_behaviour=0" in capsys.readouterr().err
    assert _cli(tmp_path, "--mine-negatives", "--record-negatives", *common) == 2
    assert "one of --record-negatives and --mine-negatives" in capsys.readouterr().err
    assert _cli(tmp_path, "--mine-negatives", *common, "audit.mine_per_behaviour=1", "audit.max_margin=-1") == 0
    out = capsys.readouterr().out
    index = read_index(mined)
    assert [e["meta"]["behaviour"] for e in index] == ["idle"] and index[0]["seed"] >= 600_000
    assert "1 of 2 candidate episodes over-paid" in out and "idle 1" in out
    assert _cli(tmp_path, "--mine-negatives", *common, "audit.mine_per_behaviour=1") == 2  # would append: refused
    assert "already holds a dataset" in capsys.readouterr().err
    assert _cli(tmp_path, "--mine-negatives", *common[:4], "audit.behaviours=[idle]", "audit.mine_per_behaviour=1",
                "audit.negatives_frame_stride=10", f"audit.mined_dir={tmp_path}/m2") == 2
    assert "no successful candidate episode" in capsys.readouterr().err and not (tmp_path / "m2").exists()
    # the audit refuses held-out seeds a mined dataset used
    assert _cli(tmp_path, *common[:4], f"audit.mined_dir={mined}", "audit.seed=600001") == 2
    assert "audit seeds 600001.. were used" in capsys.readouterr().err


def test_demo_retrains_the_lrm_with_what_mining_found(tmp_path):
    from vlmrl.system.demo_pipeline import DemoPipeline

    pipe = DemoPipeline("demo", [f"output_dir={tmp_path}", "audit.mine_per_behaviour=4"], print_fn=lambda m: None)
    calls = []

    def stage(name, argv, ok_codes=(0,), extra=()):
        calls.append((argv, list(extra)))
        if "--mine-negatives" in argv and len(calls) > 1:  # the second time, mining finds something
            (tmp_path / "demo" / "mined_negatives").mkdir(parents=True)
            (tmp_path / "demo" / "mined_negatives" / "index.jsonl").write_text("")
        return 0

    pipe._stage = stage
    pipe._mine_and_retrain()
    assert calls == [(["audit-reward", "--mine-negatives"], [])]  # nothing mined: the LRM stays as trained
    pipe._mine_and_retrain()
    argv, extra = calls[-1]
    assert argv == ["lrm-train"] and len(calls) == 3
    assert extra == [f'lrm_train.dataset_dirs=["{tmp_path}/demo/demos", "{tmp_path}/demo/hard_negatives", '
                     f'"{tmp_path}/demo/mined_negatives"]']


def test_audit_of_recorded_behaviour_episodes(tmp_path, capsys):
    """audit.episodes_dirs: recorded held-out rollouts are scored as they are (no simulator), gate and report."""
    from vlmrl.envs.dataset import EpisodeWriter

    w = EpisodeWriter(tmp_path / "heldout")
    for k, (name, cat, succ) in enumerate([("solve", "success", True), ("idle", "non_progress", False)]):
        ep = _episode([0.0, 0.1, 0.3] if succ else [0.0] * 3, [False, False, succ],
                      meta={"behaviour": name, "category": cat})
        ep.frames = np.random.default_rng(k).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
        ep.source, ep.seed, ep.task = "behaviour", 2_000_000 + k, "push the cube to the red and white target"
        w.write(ep)
    rc = _cli(tmp_path, "scorer.name=cnn", "scorer.params={}", "reward.item_kind=auto",
              f"audit.episodes_dirs=[{tmp_path}/heldout]", "audit.max_margin=1000", "audit.max_complete_share=1")
    report = json.loads((tmp_path / "demo" / "audit" / "audit.json").read_text())
    b = report["tasks"]["PushCube-v1"]["behaviours"]
    assert set(b) == {"solve", "idle"} and b["solve"]["true_success"] == 1.0 and b["idle"]["counted_episodes"] == 1
    assert rc == (0 if report["passed"] else 1) and "audit PushCube-v1" in capsys.readouterr().out
    assert _cli(tmp_path, "scorer.name=cnn", "scorer.params={}", f"audit.episodes_dirs=[{tmp_path}/nothing]") == 2
    assert "hold no dataset" in capsys.readouterr().err


def test_record_negatives_takes_per_behaviour_counts_on_disjoint_seeds(tmp_path, capsys):
    """audit.negatives_counts: these behaviours get their own episode count, recorded after the others on the seeds
    that follow theirs (the others keep the seeds they had without the override); bad counts / names: one line."""
    from vlmrl.envs.dataset import read_index

    out = tmp_path / "neg"
    assert _cli(tmp_path, "--record-negatives", f"audit.negatives_dir={out}", "env.frame_size=32",
                "audit.negatives_behaviours=[idle,solve_displaced,jitter]", "audit.negatives_per_behaviour=1",
                "audit.negatives_counts={solve_displaced: 2, push_away: 3}", "audit.negatives_frame_stride=25") == 0
    rows = read_index(out)  # push_away is not recorded: a count only applies to a behaviour that is
    assert [(r["meta"]["behaviour"], r["seed"]) for r in rows] == [
        ("idle", 500_000), ("jitter", 500_001), ("solve_displaced", 500_002), ("solve_displaced", 500_003)]
    assert _cli(tmp_path, "--record-negatives", "audit.negatives_counts={moonwalk: 2}") == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unknown behaviour" in err and "audit.negatives_counts" in err
    assert _cli(tmp_path, "--record-negatives", "audit.negatives_counts={idle: -1}") == 2
    assert "must be >= 0" in capsys.readouterr().err
