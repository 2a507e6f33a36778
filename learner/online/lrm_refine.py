"""``train.mode=lrm``: a BC base policy refined online by PPO on the reward pool's (compact LRM) rewards.

The LRM paper's recipe (initialise with an imitation-learned policy, then correct its failures with RL on
VLM rewards) on our online path. :class:`LrmRefineMode` is the mode hook of
:class:`vlmrl.learner.online.online_trainer.OnlineTrainer`:

1. once PPO is built (``on_algo_built``), it behaviour-clones the ``lrm_refine.demos`` episodes into PPO's
   own RLModule architecture (:mod:`vlmrl.learner.online.bc_pretrain`, MARWIL at beta=0), loads the cloned module
   into the PPO algorithm with RLlib's component restore (``algo.restore_from_path(path,
   component="learner_group/learner/rl_module/default_policy")``, which also syncs the env runners), and
   evaluates it: ground-truth success of greedy episodes = ``charts/success_base``;
2. PPO then trains on the pool's rewards (the reward callback, as in ``vlm-score`` mode) or, with
   ``lrm_refine.reward=env``, on the env's own reward (the ground-truth control: same base, same budget);
   after every ``lrm_refine.eval_every`` iterations the same greedy evaluation (same seeds) gives
   ``charts/success``.

Evaluation runs in the driver on its own env without frames (no reward worker is asked): the metric is
the env's ground-truth success at the end of the episode, never a training signal.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import numpy as np
from omegaconf import DictConfig, OmegaConf

from vlmrl.learner.online.training_mode import TrainingMode

BASE_EVAL_FILE = "base_eval.json"
BC_COMPONENT = "learner_group/learner/rl_module/default_policy"
"""Where the PPO algorithm keeps its (single) RLModule, as a ``restore_from_path`` component."""


def check_lrm_config(cfg: DictConfig) -> None:
    """Raise ValueError with the reason when the ``lrm_refine`` section cannot run."""
    c = cfg.lrm_refine
    if not c.demos:
        raise ValueError("train.mode=lrm needs lrm_refine.demos=<episode dataset folder> (the demonstrations the "
                         "base policy clones; record them with `vlmrl record-demos`)")
    if not (Path(c.demos) / "index.jsonl").exists():
        raise ValueError(f"lrm_refine.demos={c.demos} is not an episode dataset (no index.jsonl)")
    for name in ("bc_epochs", "bc_minibatch_size", "eval_episodes", "eval_every"):
        if int(c[name]) < 1:
            raise ValueError(f"lrm_refine.{name} must be >= 1, got {c[name]}")
    if not 0 <= int(c.critic_warmup_iters) < int(cfg.train.iterations):
        raise ValueError(f"lrm_refine.critic_warmup_iters must be in [0, train.iterations={cfg.train.iterations}) "
                         f"(the policy must get some PPO iterations), got {c.critic_warmup_iters}")
    if c.refine_log_std is not None and not cfg.train.free_log_std:
        raise ValueError("lrm_refine.refine_log_std needs train.free_log_std=true (a state-dependent std cannot be "
                         "reset); set lrm_refine.refine_log_std=null to keep BC's std")
    if not c.demo_sources:
        raise ValueError("lrm_refine.demo_sources is empty; BC needs at least one episode source (e.g. [demo])")


def final_policy(run_dir: str | Path, checkpoint: Optional[str | Path] = None) -> Any:
    """The RLModule of a finished ``vlmrl train`` run: its newest checkpoint's policy (``checkpoints/latest.json``),
    or that of ``checkpoint`` (a folder the run's trainer wrote, e.g. ``<run>/checkpoints/iter_000030``);
    FileNotFoundError naming the run (or the folder) when there is no such checkpoint."""
    from ray.rllib.core.rl_module.rl_module import RLModule

    from vlmrl.learner.run_files import latest_checkpoint

    if checkpoint is None:
        ckpt = latest_checkpoint(Path(run_dir))
        if ckpt is None:
            raise FileNotFoundError(f"no checkpoint in {run_dir}")
        checkpoint = ckpt["path"]
    module_dir = Path(checkpoint).resolve() / BC_COMPONENT  # pyarrow (RLlib's loader) takes absolute paths only
    if not module_dir.is_dir():
        raise FileNotFoundError(f"{checkpoint} is not a checkpoint of a vlmrl run (no {BC_COMPONENT})")
    return RLModule.from_checkpoint(str(module_dir))


def make_eval_env(cfg: DictConfig):
    """The run's env without frames (evaluation needs states and ground-truth success only): one CPU-sim env in the
    driver, also for a GPU-sim run (``env.sim_backend=gpu``)."""
    from vlmrl.envs.toy_reach_env import TOY_TASK, ToyReachEnv

    env_cfg = OmegaConf.to_container(cfg.env, resolve=True)
    env_cfg.update(capture_frames=False, sim_backend="cpu", num_envs=1)
    if cfg.env.task == TOY_TASK:
        return ToyReachEnv(env_cfg)
    from vlmrl.envs.maniskill_env import make_env

    return make_env(env_cfg)


def greedy_actions(module: Any, obs: np.ndarray) -> np.ndarray:
    """Mean actions of a PPO (diagonal Gaussian) RLModule for a batch of observations."""
    import torch
    from ray.rllib.core.columns import Columns

    with torch.no_grad():
        out = module.forward_inference({Columns.OBS: torch.as_tensor(np.asarray(obs, np.float32))})
    dist = module.get_inference_action_dist_cls().from_logits(out[Columns.ACTION_DIST_INPUTS])
    return dist.to_deterministic().sample().cpu().numpy()


def gaussian_actions(module: Any, obs: np.ndarray, rng: Optional[np.random.Generator]):
    """(actions, mean, std) of a PPO RLModule's diagonal Gaussian for a batch of observations: actions sampled with
    ``rng`` as its training episodes do (``rng`` None: the mean, nothing drawn)."""
    import torch
    from ray.rllib.core.columns import Columns

    with torch.no_grad():
        out = module.forward_inference({Columns.OBS: torch.as_tensor(np.asarray(obs, np.float32))})
    mean, log_std = np.split(out[Columns.ACTION_DIST_INPUTS].cpu().numpy(), 2, axis=-1)
    std = np.exp(log_std)
    return (mean if rng is None else mean + std * rng.standard_normal(mean.shape)), mean, std


def greedy_episode(module: Any, env: Any, seed: int, noise_std: float = 0.0,
                   rng: Optional[np.random.Generator] = None) -> Iterator[Dict[str, Any]]:
    """The infos of one greedy episode from ``env.reset(seed=seed)``: the reset info, then one per step.

    With ``noise_std > 0`` each action is the mean plus ``noise_std * N(0, 1)`` per dimension (from ``rng``), clipped
    to the action space: what PPO's training episodes do with a diagonal Gaussian of that std."""
    low, high = env.action_space.low, env.action_space.high
    if noise_std > 0 and rng is None:
        raise ValueError("greedy_episode: noise_std > 0 needs an rng")
    obs, info = env.reset(seed=int(seed))
    yield info
    done = False
    while not done:
        a = greedy_actions(module, obs[None])[0]
        if noise_std > 0:
            a = a + noise_std * rng.standard_normal(env.action_space.shape)
        a = np.clip(a, low, high)
        obs, _, term, trunc, info = env.step(a)
        done = bool(term or trunc)
        yield info


def greedy_success_rate(module: Any, env: Any, episodes: int, seed: int) -> float:
    """Fraction of ``episodes`` greedy episodes (seeds ``seed + i``) that end in ground-truth success."""
    from vlmrl.envs import info_keys as K

    wins = 0
    for i in range(int(episodes)):
        *_, last = greedy_episode(module, env, int(seed) + i)
        wins += int(bool(last[K.SUCCESS]))
    return wins / max(1, int(episodes))


class LrmRefineMode(TrainingMode):
    """Mode hook of ``train.mode=lrm`` (module doc): BC base policy into PPO, greedy GT evaluations."""

    def __init__(self, cfg: DictConfig, run_dir: Path, print_fn=print) -> None:
        check_lrm_config(cfg)
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.print = print_fn
        self.eval_env = None
        self.success_base: float = float("nan")
        self.success: float = float("nan")
        self.last_console_line = ""
        self.policy_frozen = False

    # --------------------------------------------------------------- OnlineTrainer hook protocol
    def start(self, reward_pool) -> None:
        """Nothing to do before PPO exists (the pool is already up)."""

    def extra_callbacks(self) -> List[Any]:
        return []

    def on_algo_built(self, algo) -> None:
        """Clone the demos into PPO's module (unless resuming: the checkpoint has the weights) and evaluate it."""
        from vlmrl.learner.run_files import latest_checkpoint

        base_file = self.run_dir / BASE_EVAL_FILE
        if self.cfg.train.resume and latest_checkpoint(self.run_dir) is not None and base_file.exists():
            self.success_base = float(json.loads(base_file.read_text())["success_base"])
            self.print(f"lrm: resuming; base policy success was {self.success_base:.2f}")
            self.set_phase(algo, int(latest_checkpoint(self.run_dir)["iteration"]))
            return
        path = self.pretrain(algo)
        if self.cfg.lrm_refine.refine_log_std is not None:
            path = with_log_std(path, float(self.cfg.lrm_refine.refine_log_std))
        load_module_into(algo, path)
        self.success_base = self.evaluate(algo)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        base_file.write_text(json.dumps({"success_base": self.success_base, "bc_module": str(path),
                                         "eval_episodes": int(self.cfg.lrm_refine.eval_episodes)}))
        self.print(f"lrm: base policy (BC) loaded into PPO; ground-truth success {self.success_base:.2f} over "
                   f"{self.cfg.lrm_refine.eval_episodes} greedy episodes")
        self.set_phase(algo, 0)

    def set_phase(self, algo, done_iterations: int) -> None:
        """Critic warm-up (policy frozen) for the first ``lrm_refine.critic_warmup_iters`` iterations, then PPO."""
        from vlmrl.learner.online.critic_warmup import set_policy_frozen

        warmup = int(self.cfg.lrm_refine.critic_warmup_iters)
        frozen = done_iterations < warmup
        if warmup and frozen != self.policy_frozen:
            set_policy_frozen(algo, frozen)
            self.print(f"lrm: critic warm-up: PPO trains the value function only for {warmup} iteration(s), the "
                       f"policy stays the base policy" if frozen else
                       f"lrm: critic warm-up done after {warmup} iteration(s); PPO now updates the policy")
        self.policy_frozen = frozen

    def after_iteration(self, algo, iteration: int) -> Dict[str, float]:
        c = self.cfg.lrm_refine
        total = int(self.cfg.train.iterations)
        s = {"charts/success_base": self.success_base, "charts/policy_frozen": float(self.policy_frozen)}
        self.set_phase(algo, iteration)  # for the next iteration
        if iteration % int(c.eval_every) == 0 or iteration == total:
            self.success = self.evaluate(algo)
            s["charts/success"] = self.success
        self.last_console_line = (f"  lrm eval: success {self.success:.2f} (base policy {self.success_base:.2f}, "
                                  f"{c.eval_episodes} greedy episodes)")
        if iteration == total:
            self.last_console_line += (f"\nlrm: base policy success {self.success_base:.2f} -> refined "
                                       f"{self.success:.2f} after {total} PPO iterations")
        return s

    def close(self) -> None:
        if self.eval_env is not None:
            self.eval_env.close()
            self.eval_env = None

    # --------------------------------------------------------------- steps
    def pretrain(self, algo) -> Path:
        """Behaviour-clone the demos with the PPO module's spaces and hidden sizes; the saved module's path."""
        from vlmrl.learner.online.bc_pretrain import demos_to_episodes, train_bc

        c = self.cfg.lrm_refine
        module = algo.get_module()
        data = demos_to_episodes(c.demos, sources=list(c.demo_sources), max_episodes=int(c.max_demo_episodes))
        obs_dim = int(np.prod(module.observation_space.shape))
        act_dim = int(np.prod(module.action_space.shape))
        if (data.state_dim, data.action_dim) != (obs_dim, act_dim):
            raise ValueError(f"lrm_refine.demos={c.demos}: demo states/actions have dims {data.state_dim}/"
                             f"{data.action_dim}, but env {self.cfg.env.task} has {obs_dim}/{act_dim} (recorded with "
                             f"another obs/control mode?)")
        self.print(f"lrm: behaviour cloning {len(data.episodes)} demos ({data.num_steps} steps, "
                   f"{data.demo_success_rate:.0%} successful) into PPO's module")
        return train_bc(data, module.observation_space, module.action_space, self.run_dir, list(self.cfg.train.hidden),
                        epochs=int(c.bc_epochs), lr=float(c.bc_lr), minibatch_size=int(c.bc_minibatch_size),
                        seed=int(self.cfg.seed), free_log_std=bool(self.cfg.train.free_log_std), print_fn=self.print)

    def evaluate(self, algo) -> float:
        if self.eval_env is None:
            self.eval_env = make_eval_env(self.cfg)
        c = self.cfg.lrm_refine
        return greedy_success_rate(algo.get_module(), self.eval_env, int(c.eval_episodes), int(c.eval_seed))


def load_module_into(algo, module_path: str | Path) -> None:
    """Load a saved RLModule (same architecture) into the algorithm's learner and sync its env runners."""
    algo.restore_from_path(str(Path(module_path).resolve()), component=BC_COMPONENT)


def with_log_std(module_path: str | Path, log_std: float) -> Path:
    """A copy of a saved free-log-std module (``<path>_refine_init``) whose action log std is ``log_std``."""
    from ray.rllib.core.rl_module.rl_module import RLModule

    module = RLModule.from_checkpoint(str(Path(module_path).resolve()))  # RLlib reads paths as URIs: absolute only
    state = module.get_state()
    if "pi.log_std" not in state:
        raise ValueError(f"{module_path}: the module has no free log std parameter (train.free_log_std=false)")
    state["pi.log_std"] = np.full_like(state["pi.log_std"], log_std)
    module.set_state(state)
    out = Path(str(module_path) + "_refine_init")
    module.save_to_path(str(out.resolve()))
    return out
