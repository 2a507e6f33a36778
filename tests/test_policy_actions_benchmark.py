"""benchmarks.policy_actions: greedy acting takes the policy's mean, stochastic acting samples its own std."""

import numpy as np
import torch
from ray.rllib.core.columns import Columns

from benchmarks.policy_actions import act


class GaussianHead:
    """The part of a PPO RLModule ``act`` uses: forward_inference -> [mean, log_std] per action dimension."""

    def __init__(self, mean, log_std):
        self.inputs = torch.tensor([[*mean, *log_std]], dtype=torch.float32)

    def forward_inference(self, batch):
        assert batch[Columns.OBS].shape == (1, 3)
        return {Columns.ACTION_DIST_INPUTS: self.inputs}


def test_greedy_is_the_mean_and_stochastic_samples_the_policys_std():
    head = GaussianHead([0.5, -2.0], [np.log(0.1), np.log(2.0)])
    obs = np.zeros(3, np.float32)
    a, mean, std = act(head, obs, np.random.default_rng(0), stochastic=False)
    np.testing.assert_allclose(a, [0.5, -2.0], atol=1e-6)
    np.testing.assert_allclose(std, [0.1, 2.0], rtol=1e-5)
    samples = np.stack([act(head, obs, np.random.default_rng(i), stochastic=True)[0] for i in range(2000)])
    np.testing.assert_allclose(samples.mean(0), [0.5, -2.0], atol=0.15)
    np.testing.assert_allclose(samples.std(0), [0.1, 2.0], rtol=0.1)


def test_a_checkpoint_folder_names_its_run_and_a_run_folder_its_newest_checkpoint(tmp_path):
    from benchmarks.policy_actions import run_and_checkpoint

    ckpt = tmp_path / "run" / "checkpoints" / "iter_000030"
    assert run_and_checkpoint(ckpt) == (tmp_path / "run", ckpt)
    assert run_and_checkpoint(tmp_path / "run") == (tmp_path / "run", None)
