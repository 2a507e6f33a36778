"""ManiSkillTaskVectorEnv, the GPU-simulation path: gymnasium NEXT_STEP autoreset, per-sub-env frame schedules and
info masks, the same trajectories as the single CPU env. Runs on ManiSkill's CPU sim (one env) and, for several
sub-envs ending at different steps, on a FAKE batched simulator (no GPU here)."""

import numpy as np
import pytest
import torch
from gymnasium.spaces import Box
from gymnasium.wrappers.vector import DictInfoToList

from vlmrl.envs import info_keys as K
from vlmrl.envs import maniskill_vector_env
from vlmrl.envs.maniskill_env import ManiSkillTaskEnv
from vlmrl.envs.rllib_env import rllib_env_creator
from vlmrl.envs.maniskill_vector_env import ManiSkillTaskVectorEnv


class CountingFrames:
    """FAKE renderer: (N, 4, 4, 3) frames whose pixels encode the call count."""

    def __init__(self, n):
        self.n, self.calls = n, 0

    def capture(self):
        self.calls += 1
        return torch.full((self.n, 4, 4, 3), self.calls, dtype=torch.uint8)


def test_cpu_sim_autoreset_is_next_step_and_frames_follow_the_schedule():
    frames = CountingFrames(1)
    env = DictInfoToList(ManiSkillTaskVectorEnv(None, frame_source=frames, vectorize="maniskill", max_episode_steps=5,
                                                frame_stride=2, reward_mode="dense"))
    assert env.observation_space.shape[0] == 1 and env.single_action_space.shape == (7,)
    obs, infos = env.reset(seed=0)
    assert obs.dtype == np.float32 and obs.shape == env.observation_space.shape
    assert infos[0][K.STEP] == 0 and infos[0][K.HAS_FRAME] and infos[0][K.FRAME].shape == (4, 4, 3)
    text = infos[0][K.TASK_TEXT]
    assert text in env.unwrapped.task.seen
    frame_steps, last_obs = [0], obs
    for t in range(1, 6):
        obs, r, term, trunc, infos = env.step(np.full((1, 7), 0.5, np.float32))
        assert infos[0][K.STEP] == t and r[0] == pytest.approx(infos[0][K.ENV_REWARD]) and not term[0]
        assert trunc[0] == (t == 5)
        if infos[0][K.HAS_FRAME]:
            frame_steps.append(int(infos[0][K.FRAME_STEP]))
        else:
            assert K.FRAME not in infos[0]
        last_obs = obs
    assert frame_steps == [0, 2, 4, 5]  # reset, every 2nd step, the truncated last step
    # the step after the end: the sub-env's next episode starts (action ignored), reward 0, with a reset frame
    obs, r, term, trunc, infos = env.step(np.full((1, 7), 0.5, np.float32))
    assert infos[0][K.STEP] == 0 and r[0] == 0.0 and not term[0] and not trunc[0]
    assert infos[0][K.HAS_FRAME] and infos[0][K.FRAME_STEP] == 0 and not np.allclose(obs, last_obs)
    for t in range(1, 6):  # ManiSkill's time limit counts the new episode from 0
        _, _, _, trunc, infos = env.step(np.zeros((1, 7), np.float32))
    assert trunc[0] and infos[0][K.STEP] == 5
    env.close()


def test_cpu_sim_vector_env_follows_the_single_env():
    """Same seed and actions: the vector path's states and ground truth match the single env's (up to the single
    env's stale-contact fix at reset, <= 2e-4; the vector path leaves ManiSkill's batched reset as it is)."""
    single = ManiSkillTaskEnv(None, capture_frames=False, reward_mode="sparse")
    vec = rllib_env_creator(dict(capture_frames=False, reward_mode="sparse", vectorize="maniskill", num_envs=1))
    assert isinstance(vec, ManiSkillTaskVectorEnv)
    rng = np.random.default_rng(0)
    o1, i1 = single.reset(seed=7)
    o2, i2 = vec.reset(seed=7)
    np.testing.assert_allclose(o2[0], o1, atol=1e-3)
    for _ in range(20):
        a = rng.uniform(-1, 1, 7).astype(np.float32)
        o1, r1, _, _, i1 = single.step(a)
        o2, r2, _, _, i2 = vec.step(a[None])
        np.testing.assert_allclose(o2[0], o1, atol=1e-3)
        assert r2[0] == r1 and i2[K.SUCCESS][0] == i1[K.SUCCESS]
        assert i2[K.ENV_REWARD][0] == pytest.approx(i1[K.ENV_REWARD], abs=1e-3)
        assert not i2[K.HAS_FRAME].any() and K.FRAME not in i2  # capture_frames=False renders nothing
    single.close()
    vec.close()


class FakeBatchedSim:
    """FAKE stand-in for ManiSkill's GPU simulation (this machine has none): N envs as torch tensors, ManiSkill's
    raw-env calls (reset with ``options['env_idx']``, step, ``compute_normalized_dense_reward``). Each env's position
    grows by its action; it succeeds (and terminates) at position >= 1."""

    def __init__(self, n):
        self.n = n
        self.unwrapped = self
        self.device = torch.device("cpu")
        self.single_observation_space = Box(-np.inf, np.inf, (2,), np.float32)
        self.single_action_space = Box(-1.0, 1.0, (1,), np.float32)
        self.pos = torch.zeros(n)
        self.resets = []

    def _obs(self):
        return torch.stack([self.pos, torch.arange(self.n, dtype=torch.float32)], 1)

    def reset(self, seed=None, options=None):
        idx = (options or {}).get("env_idx", torch.arange(self.n))
        self.pos[idx] = 0.0
        self.resets.append(sorted(int(i) for i in idx))
        return self._obs(), {"success": self.pos >= 1}

    def step(self, action):
        self.pos += action[:, 0]
        success = self.pos >= 1
        return self._obs(), self.pos / 2, success, torch.zeros(self.n, dtype=torch.bool), {"success": success}

    def compute_normalized_dense_reward(self, obs, action, info):
        return self.pos / 2

    def close(self):
        pass


def test_sub_envs_end_and_restart_on_their_own(monkeypatch):
    sim = FakeBatchedSim(3)
    monkeypatch.setattr(maniskill_vector_env, "make_maniskill_env", lambda c, task, needs_renderer: sim)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU machine's config; the FAKE sim runs it
    frames = CountingFrames(3)
    env = DictInfoToList(ManiSkillTaskVectorEnv(None, frame_source=frames, sim_backend="gpu", num_envs=3,
                                                frame_stride=2, reward_mode="sparse", text_split="all"))
    obs, infos = env.reset(seed=1)
    assert obs.shape == (3, 2) and [i[K.STEP] for i in infos] == [0, 0, 0] and all(i[K.HAS_FRAME] for i in infos)
    # env 1 succeeds at step 2 (terminates); envs 0 and 2 go on
    obs, r, term, trunc, infos = env.step(np.array([[0.1], [0.5], [0.0]], np.float32))
    assert not term.any() and not any(i[K.HAS_FRAME] for i in infos)
    calls = frames.calls
    obs, r, term, trunc, infos = env.step(np.array([[0.1], [0.5], [0.0]], np.float32))
    assert term.tolist() == [False, True, False] and r.tolist() == [0.0, 1.0, 0.0]
    assert [i[K.STEP] for i in infos] == [2, 2, 2] and all(i[K.FRAME_STEP] == 2 for i in infos)
    assert frames.calls == calls + 1  # one render for all due sub-envs
    # next step: env 1 restarts (its action ignored: reset after the step), the others take step 3 without frames
    obs, r, term, trunc, infos = env.step(np.array([[0.1], [0.9], [0.0]], np.float32))
    assert sim.resets[-1] == [1] and obs[1, 0] == 0.0 and obs[0, 0] == pytest.approx(0.3)
    assert [i[K.STEP] for i in infos] == [3, 0, 3] and r.tolist() == [0.0, 0.0, 0.0] and not term.any()
    assert [K.FRAME in i for i in infos] == [False, True, False] and infos[1][K.FRAME_STEP] == 0
    assert not infos[1][K.SUCCESS]
    # env 0 ends at step 4 while env 1 is at step 1: frames where each is due (env 0: end and stride; env 2: stride)
    obs, r, term, trunc, infos = env.step(np.array([[0.8], [0.0], [0.0]], np.float32))
    assert term.tolist() == [True, False, False] and [i[K.STEP] for i in infos] == [4, 1, 4]
    assert [K.FRAME in i for i in infos] == [True, False, True]
    env.close()


def test_bad_vector_configs_are_refused():
    with pytest.raises(ValueError, match="env.vectorize must be one of"):
        ManiSkillTaskVectorEnv(None, capture_frames=False, vectorize="ray")
    with pytest.raises(ValueError, match="num_envs > 1 needs env.sim_backend=gpu"):
        ManiSkillTaskVectorEnv(None, capture_frames=False, vectorize="maniskill", num_envs=4)
    with pytest.raises(ValueError, match="needs env.vectorize=auto or maniskill"):
        ManiSkillTaskVectorEnv(None, capture_frames=False, vectorize="rllib", sim_backend="gpu", num_envs=4)
    with pytest.raises(ValueError, match="resets sub-envs itself"):
        ManiSkillTaskVectorEnv(None, capture_frames=False, vectorize="maniskill").reset(options={"env_idx": [0]})


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="ManiSkill's GPU sim needs a CUDA GPU")
def test_gpu_sim_sub_envs_autoreset_with_frames():
    """On a CUDA machine: 8 PushCube envs on ManiSkill's GPU sim, rendered on the GPU, through the vector API."""
    env = DictInfoToList(ManiSkillTaskVectorEnv(None, sim_backend="gpu", num_envs=8, max_episode_steps=10,
                                                frame_size=32, frame_stride=3, reward_mode="dense"))
    obs, infos = env.reset(seed=0)
    assert obs.shape == (8, env.single_observation_space.shape[0]) and all(i[K.FRAME].shape == (32, 32, 3)
                                                                            for i in infos)
    steps, restarts = np.zeros(8, int), 0
    for _ in range(25):
        obs, r, term, trunc, infos = env.step(env.action_space.sample())
        ended_before = steps == -1  # these sub-envs restart in this step
        restarts += int(ended_before.sum())
        for e, info in enumerate(infos):
            assert info[K.STEP] == (0 if ended_before[e] else steps[e] + 1)
            assert (K.FRAME in info) == (info[K.STEP] % 3 == 0 or bool(term[e] or trunc[e]))
            assert r[e] == (0.0 if ended_before[e] else pytest.approx(info[K.ENV_REWARD]))
        steps = np.where(term | trunc, -1, [i[K.STEP] for i in infos])
    assert restarts >= 8  # every sub-env ended by its 10-step limit at the latest and started again
    env.close()
