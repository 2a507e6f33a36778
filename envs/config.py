"""Config schemas of the simulator tasks and datasets: the env, demo recording, dataset inputs and mixing.

Part of the one config tree (:mod:`vlmrl.system.config` assembles it); they live here, with the code that reads
them. Every field is documented where it is declared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional


@dataclass
class EnvConfig:
    """The ManiSkill environment an actor runs (``vlmrl.envs.maniskill_env``): what the policy sees,
    which frames are rendered for the reward service, and what reward the env itself returns."""

    task: str = "PushCube-v1"
    """Task name in ``vlmrl.envs.tasks.TASKS`` (PushCube-v1, PickCube-v1, StackCube-v1, PullCube-v1, PegInsertionSide-v1)."""
    text_split: str = "seen"
    """Which task paraphrases an episode's text is sampled from: ``seen``, ``unseen`` or ``all``."""
    task_text: Optional[str] = None
    """A fixed task text for every episode (overrides sampling from ``text_split``)."""
    obs_mode: str = "state"
    """Policy observation: ``state`` (flattened float32 vector). Frames for rewards come separately (see ``camera``)."""
    control_mode: str = "pd_ee_delta_pose"
    """ManiSkill controller of the policy's actions (``pd_ee_delta_pose``, ``pd_joint_delta_pos``, ``pd_joint_pos``, ...);
    the recorded demos use ``pd_ee_delta_pose`` too, so offline data and the online policy share one action space."""
    sim_backend: str = "cpu"
    """``cpu`` (ManiSkill's CPU sim: one env per process) or ``gpu`` (ManiSkill's GPU sim: ``num_envs`` envs stepped
    in lock-step in one process; needs a CUDA GPU; each env runner then holds one ManiSkillTaskVectorEnv)."""
    num_envs: int = 1
    """Envs in one process (per env runner); > 1 needs ``sim_backend=gpu``. With the GPU sim this is the env runner's
    vector size (``train.num_envs_per_env_runner`` must then be 1 or the same number)."""
    vectorize: str = "auto"
    """Who batches an env runner's envs: ``rllib`` (single envs in RLlib's sync vector env, CPU sim), ``maniskill``
    (one ``vlmrl.envs.maniskill_vector_env.ManiSkillTaskVectorEnv`` of ``num_envs`` envs, RLlib's
    ``vector_entry_point`` mode; with the CPU sim it holds one env: the GPU path's code on a CPU machine) or ``auto``
    (``maniskill`` for ``sim_backend=gpu``, else ``rllib``)."""
    max_episode_steps: Optional[int] = None
    """Episode limit; None uses the task's registered limit."""
    end_on_success: bool = True
    """False: an episode runs to its time limit after the task succeeds (ManiSkill's ``ignore_terminations``, as
    its PPO baselines train; success stays in ``info`` per step, evaluation then reads it at the last step). A
    reward paid per step for looking done (the LRM's completion) then pays for staying done; with episodes that
    end on success it pays more for lingering next to success than for reaching it (RESULTS.md, session 5)."""
    reward_mode: str = "none"
    """What the env itself returns as reward: ``none`` (0; the VLM reward is added by the actor), ``sparse``
    (1 on success) or ``dense`` (ManiSkill's normalized dense reward). The dense reward and ``success`` are
    always in ``info`` for evaluation."""
    capture_frames: bool = True
    """Render camera frames into ``info`` for the reward service; False runs state-only (no renderer at all)."""
    frame_size: int = 128
    """Side of the square RGB frame (uint8, frame_size x frame_size x 3)."""
    frame_stride: int = 4
    """Render a frame every this many steps (and always at reset and at episode end); each frame has a fixed cost."""
    camera: str = "render_camera"
    """Camera for frames: ``render_camera`` (third-person view that also shows goal markers) or a sensor camera
    of the task such as ``base_camera`` (goal markers hidden)."""
    camera_look_at: Optional[List[float]] = None
    """Move the frame camera (a human-render camera such as ``render_camera``): ``[eye_x, eye_y, eye_z, target_x,
    target_y, target_z]`` in metres, world frame; None keeps the task's pose. PushCube at 64 px: the default view shows
    the cube as a few pixels beside the arm; ``[0.6, 0, 0.35, 0.05, 0, 0]`` with fov 1.0 looks from the goal's side,
    cube and goal in sight for the whole push (a better compact LRM: RESULTS.md, session 7)."""
    camera_fov: Optional[float] = None
    """Vertical field of view of the frame camera (radians); None keeps the task's."""
    shader_pack: str = "minimal"
    """SAPIEN shader pack for the frame camera: ``minimal`` (cheapest), ``default``, ``rt`` (ray tracing, slow)."""
    lp_num_threads: Optional[int] = None
    """Mesa lavapipe rasteriser threads on CPU machines (LP_NUM_THREADS); None keeps Mesa's default (all cores)."""
    shader_cache_dir: Optional[str] = None
    """Mesa on-disk shader cache (MESA_SHADER_CACHE_DIR); None uses ~/.cache/vlmrl/mesa_shader_cache."""


@dataclass
class RecordDemosConfig:
    """``vlmrl record-demos``: episodes for reward-model training and the offline mode, written in the
    ``vlmrl.envs.dataset`` format. Demos come from scripted controllers (``pd_ee_delta_pose``) or ManiSkill's
    motion planners (``pd_joint_pos``, needs a working mplib 0.1.1)."""

    demo_policy: str = "scripted"
    """``scripted`` (vlmrl.envs.scripted: PushCube, PullCube, PickCube) or ``motion_planner`` (ManiSkill + mplib)."""

    output_dir: str = "runs/datasets/demos"
    """Dataset folder (appended to if it exists)."""
    num_demo: int = 10
    """Successful demo episodes to record (failed attempts are retried with the next seed, not kept)."""
    num_noisy: int = 5
    """``noisy_demo`` episodes: a fresh demo's actions replayed with Gaussian noise (often fail)."""
    num_random: int = 5
    """``random`` episodes: uniformly sampled actions."""
    num_retreat: int = 0
    """``retreat`` episodes (push tasks, scripted only): a demo whose arm, once the task is done, leaves (up, then
    to a random point) and holds there to the time limit while the object stays done: success that does not
    look like a demo's last frame, the counterpart of the near misses."""
    num_near_miss: int = 0
    """``near_miss`` episodes (hard negatives; scripted controllers only), cycling ``stop_short`` (the demo's
    approach, then the arm holds the pose where the push / lift would start), ``wrong_goal`` (the whole motion
    to a spot outside the success tolerance) and ``leave_undone`` (one of those, then the arm leaves like a
    retreat demo's). They fail while looking like a demo (or a retreat), so an LRM trained on them cannot reward
    the arm's pose alone."""
    noise_std: float = 0.3
    """Std of the Gaussian noise added to a demo's (normalized, in [-1, 1]) actions for noisy demos. PushCube:
    0.1 -> ~80 % still succeed, 0.3 -> ~60 %, 0.5 -> ~20 %."""
    frame_stride: int = 1
    """Frame every this many steps (plus first and last state) in the recorded episodes."""
    max_steps: int = 200
    """Longest recorded episode; a motion plan running longer is cut (and counts as failed if not successful)."""
    stop_after_success_steps: int = 5
    """Stop a demo this many steps after it first succeeds (the planner would otherwise keep moving)."""
    max_plan_failures: int = 50
    """Give up when this many demo attempts failed in a row."""
    seed: int = 0
    """First env seed; each episode uses the next one."""
    task: Optional[str] = None
    """Task to record; None uses ``env.task``. Frame size/camera come from the ``env`` section."""


@dataclass
class HDF5KeysConfig:
    """Where an HDF5 dataset keeps each field (see ``vlmrl.envs.offline_readers`` for the Minari/D4RL layouts)."""

    state_key: str = "observations"
    """State observations (T+1 rows per episode); for dict observations e.g. ``observations/state``."""
    image_key: Optional[str] = None
    """Image observations, uint8 (.., H, W, 3), e.g. ``observations/pixels``; None = no frames (labelling needs them)."""
    action_key: str = "actions"
    reward_key: str = "rewards"
    success_key: str = "infos/success"
    """Success per step; when absent, ``terminations`` (Minari) / ``terminals`` (D4RL) are used."""
    task_attr: str = "task"
    """HDF5 attribute with the task text (episode group first, then the file root); ``task_text`` overrides it."""
    source_attr: str = "source"
    """HDF5 attribute with the episode's source label (``demo``, ``random``, ...)."""


@dataclass
class DatasetInputConfig:
    """One offline episode source: a folder in the project's format, an HDF5 file, or generated synthetic episodes."""

    path: str = ""
    """Dataset folder (``episodes``: index.jsonl + episodes/) or HDF5 file / Minari dataset folder."""
    format: str = "episodes"
    """``episodes`` (vlmrl.envs.dataset), ``minari_hdf5``, ``d4rl_hdf5``, or ``synthetic`` (build-offline-dataset only:
    ``max_episodes`` SYNTHETIC episodes from vlmrl.envs.synthetic_episodes, for tests and CPU demos)."""
    name: Optional[str] = None
    """Label of this input in manifests and rows (default: the folder/file name)."""
    task_text: Optional[str] = None
    """Task text for every episode of this input (overrides the stored one; required for HDF5 without a task attribute)."""
    source: str = "external"
    """Source label of HDF5 episodes without a ``source`` attribute."""
    counts: Dict[str, int] = field(default_factory=dict)
    """build-offline-dataset: most episodes taken per source label, e.g. ``{demo: 20, noisy_demo: 20, random: 10}``;
    labels not listed are skipped; empty = take every label."""
    max_episodes: int = 0
    """Most episodes taken from this input (0 = no limit; ``synthetic``: how many to generate)."""
    seed: int = 0
    """``synthetic``: generator seed."""
    repeat: int = 1
    """Reward-model training (``lrm_train.dataset_dirs``): each training episode of this input is used this many
    times per epoch (oversampling a small source, e.g. hard negatives); its held-out episodes are not repeated."""
    hdf5: HDF5KeysConfig = field(default_factory=HDF5KeysConfig)


@dataclass
class BuildOfflineDatasetConfig:
    """``vlmrl build-offline-dataset``: merge several recorded sources (tasks, task texts, demo / noisy / random
    episodes) into one mixed-quality episode dataset with a manifest of per-input counts (envs/offline_mix.py)."""

    inputs: List[DatasetInputConfig] = field(default_factory=list)
    output_dir: str = "runs/datasets/offline_mix"
    """Output dataset folder (envs/dataset.py format) + ``manifest.json``; must not hold a dataset already."""
    shuffle: bool = True
    """Interleave the inputs' episodes in a seeded random order (else input by input)."""
    seed: int = 0
