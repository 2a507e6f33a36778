"""The ``compact_lrm`` scorer: a trained compact Large Reward Model (reward_workers/models/compact_lrm.py) as a reward worker.

Items are PAIRs (previous frame, current frame). Each result carries the three LRM components,
``progress`` and ``completion`` (of the current frame) and ``contrastive`` (probability that the
current frame is further along than the previous one), and ``reward`` = the weighted sum
``sum_k weights[k] * component_k``. ``model_version`` is a hash of the weights file, so the
reward cache and responses change when the model is retrained.

The pair answer (``label``): which frame is further along, the same first / second / none the VLM ``preference``
scorer answers, so a labeller pool running this scorer is the preference mode's AI labeller
(``preference.labeller=pool``, ``preference.labeller_scorer.name=compact_lrm``). ``label_from`` picks the head:

* ``contrastive`` (default): ``second`` when ``contrastive`` > 0.5 + ``label_margin``, ``first`` when it is
  < 0.5 - ``label_margin``, else ``none``. The head was trained on two frames of one episode, so it orders frames
  of the same episode; a labeller's pairs mostly come from two episodes.
* ``progress``: the absolute progress of each frame (a second pass with the pair swapped gives the first's):
  ``second`` when progress(second) - progress(first) > ``label_margin``, ``first`` when < -``label_margin``, else
  ``none``. Progress is one scale across episodes (benchmarks/results/preference_pushcube.md, section 2: on a
  from-scratch policy's frames the contrastive answer agreed with the oracle on 0.43 of pairs, progress on 0.59).
  Costs a second forward pass per item, so the reward path keeps the default.

An ensemble (``ensemble_dirs``: more LRM folders of the same recipe, e.g. trained with other ``lrm_train.seed``
values): every component is the members' mean, and ``disagreement`` (the members' standard deviation of progress)
is added to the components. With ``disagreement_penalty`` = k > 0, ``progress`` and ``completion`` are each lowered
by k x their own standard deviation over the members (a lower confidence bound, clipped at 0): a state the members
disagree on -- one none of them was trained on -- pays less, so a policy gains little from seeking it out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Sequence

import numpy as np
import torch

from vlmrl.reward_workers.scorers.base import ItemKind, Scorer, ScorerError, ScoreResult, register_scorer

if TYPE_CHECKING:
    from vlmrl.reward_workers.models.compact_lrm import CompactLRM

COMPONENTS = ("progress", "completion", "contrastive")


LABEL_SOURCES = ("contrastive", "progress")


def pair_label(contrastive: float, margin: float) -> str:
    """``first`` / ``second`` / ``none`` from P(second frame further along) (see module doc)."""
    return signed_label(contrastive - 0.5, margin)


def signed_label(second_minus_first: float, margin: float) -> str:
    """``second`` when the second frame is ahead by more than ``margin``, ``first`` when behind by more, else ``none``."""
    if second_minus_first > margin:
        return "second"
    if second_minus_first < -margin:
        return "first"
    return "none"


def _param_name(i: int) -> str:
    """The param that names member ``i`` of [weights_dir, *ensemble_dirs] (in errors)."""
    return "weights_dir" if i == 0 else f"ensemble_dirs[{i - 1}]"


def _cannot_load(param: str, weights_dir: str, e: Exception) -> ScorerError:
    return ScorerError(f"compact_lrm cannot load {param}={weights_dir!r} (train one with `vlmrl lrm-train`): {e}")


@register_scorer
class CompactLrmScorer(Scorer):
    """Scores (previous, current) frame pairs with a trained compact LRM folder, batched."""

    name = "compact_lrm"
    item_kind = ItemKind.PAIR

    @dataclass
    class Params:
        weights_dir: str = ""
        """A trained compact LRM folder (``vlmrl lrm-train`` out_dir: config.json + model.safetensors)."""
        weights: Dict[str, float] = field(default_factory=lambda: {"progress": 1.0, "completion": 1.0, "contrastive": 0.0})
        """reward = sum of weights[k] * component k over progress / completion / contrastive (missing keys weigh 0)."""
        device: str = "cpu"
        """torch device (``cuda`` on a GPU worker)."""
        num_threads: int = 0
        """torch CPU threads (0 = leave torch's setting)."""
        label_margin: float = 0.1
        """Pair answer: ``none`` while |contrastive - 0.5| (or the progress difference) <= this; in [0, 0.5)."""
        label_from: str = "contrastive"
        """Pair answer from the ``contrastive`` head or from the two frames' ``progress`` (module doc)."""
        ensemble_dirs: List[str] = field(default_factory=list)
        """More compact LRM folders scored beside ``weights_dir``; components are the members' mean (module doc)."""
        disagreement_penalty: float = 0.0
        """k >= 0: progress and completion minus k x their standard deviation over the members (needs ensemble_dirs)."""

    @classmethod
    def check_params(cls, params: "CompactLrmScorer.Params") -> None:
        """Every folder (weights_dir, ensemble_dirs) holds a saved compact LRM; nothing is loaded."""
        from vlmrl.reward_workers.models.compact_lrm import CompactLRM

        if not params.weights_dir:
            raise ScorerError("compact_lrm needs params.weights_dir (a folder written by `vlmrl lrm-train`)")
        for i, d in enumerate([params.weights_dir, *params.ensemble_dirs]):
            try:
                CompactLRM.check_folder(d)
            except FileNotFoundError as e:
                raise _cannot_load(_param_name(i), d, e) from e

    def __init__(self, params: "CompactLrmScorer.Params") -> None:
        super().__init__(params)
        self.check_params(params)
        bad = sorted(set(params.weights) - set(COMPONENTS))
        if bad:
            raise ScorerError(f"compact_lrm weights has unknown components {bad}; known: {list(COMPONENTS)}")
        if params.device.startswith("cuda") and not torch.cuda.is_available():
            raise ScorerError(f"compact_lrm device={params.device!r} but no CUDA GPU is available")
        if not 0.0 <= float(params.label_margin) < 0.5:
            raise ScorerError(f"compact_lrm label_margin must be in [0, 0.5), got {params.label_margin}")
        if params.label_from not in LABEL_SOURCES:
            raise ScorerError(f"compact_lrm label_from must be one of {list(LABEL_SOURCES)}, got {params.label_from!r}")
        if params.num_threads > 0:
            torch.set_num_threads(params.num_threads)
        penalty = float(params.disagreement_penalty)
        if penalty < 0 or (penalty > 0 and not params.ensemble_dirs):
            raise ScorerError(f"compact_lrm disagreement_penalty={penalty} needs to be >= 0 and needs "
                              "params.ensemble_dirs (the other members' folders)")
        digest = hashlib.sha256(f"penalty={penalty}".encode() if params.ensemble_dirs else b"")
        self.models = [self._load(d, params.device, digest, _param_name(i))
                       for i, d in enumerate([params.weights_dir, *params.ensemble_dirs])]
        self.model = self.models[0]
        self._version = digest.hexdigest()[:12]
        self._weights = {k: float(params.weights.get(k, 0.0)) for k in COMPONENTS}

    @staticmethod
    def _load(weights_dir: str, device: str, digest, param: str) -> "CompactLRM":
        """One member (``param`` names it in errors), its weights file hashed into ``digest`` (the model version)."""
        from vlmrl.reward_workers.models.compact_lrm import CompactLRM

        try:
            model = CompactLRM.from_pretrained(weights_dir, device=device)
        except (FileNotFoundError, ValueError) as e:
            raise _cannot_load(param, weights_dir, e) from e
        with open(Path(weights_dir) / "model.safetensors", "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        return model

    def _predict(self, tasks: Sequence[str], items: Sequence[np.ndarray]) -> Dict[str, np.ndarray]:
        """The components of every item: one model's, or the ensemble's mean (+ disagreement, penalty)."""
        outs = [m.predict(list(tasks), [it[0] for it in items], [it[1] for it in items]) for m in self.models]
        if len(outs) == 1:
            return outs[0]
        stacked = {k: np.stack([o[k] for o in outs]) for k in COMPONENTS}
        mean = {k: v.mean(axis=0) for k, v in stacked.items()}
        k_pen = float(self.params.disagreement_penalty)
        for k in ("progress", "completion"):
            mean[k] = np.clip(mean[k] - k_pen * stacked[k].std(axis=0), 0.0, 1.0)
        mean["disagreement"] = stacked["progress"].std(axis=0)
        return mean

    @property
    def model_id(self) -> str:
        return f"compact_lrm:{self.params.weights_dir}"

    @property
    def model_version(self) -> str:
        return self._version

    def update_weights(self, version: str, state: bytes) -> None:
        """Hot swap: ``state`` is a ``model.safetensors`` of the same architecture (a fine-tuned copy of the served
        LRM, e.g. a round of ``reward_refresh``); a bad update leaves the served model as it was."""
        from safetensors.torch import load as load_safetensors

        from vlmrl.reward_workers.models.compact_lrm import CompactLRM

        if not version:
            raise ScorerError("compact_lrm: a weight update needs a non-empty version")
        if self.params.ensemble_dirs:
            raise ScorerError("compact_lrm: weight updates replace one model; this scorer serves an ensemble "
                              "(params.ensemble_dirs)")
        try:
            sd = load_safetensors(bytes(state))
        except Exception as e:  # noqa: BLE001 - re-raised with what was wrong
            raise ScorerError(f"compact_lrm: weight update is not a safetensors file: {type(e).__name__}: {e}") from e
        fresh = CompactLRM(self.model.config)  # same architecture ...
        if self.model.config.text_encoder == "minilm":
            fresh.minilm = self.model.minilm  # ... and the same frozen text embedder with its cache (not a parameter)
        fresh.to(self.params.device)
        try:
            fresh.load_state_dict(sd, strict=True)
        except RuntimeError as e:
            raise ScorerError(f"compact_lrm: weight update does not fit the served model's architecture: {e}") from e
        self.model = fresh.eval()
        self.models = [fresh]
        self._version = str(version)

    def score_batch(self, tasks: Sequence[str], items: Sequence[np.ndarray]) -> list[ScoreResult]:
        if len(tasks) != len(items):
            raise ScorerError(f"{len(tasks)} tasks for {len(items)} items")
        if not items:
            return []
        for i, it in enumerate(items):
            if it.ndim != 4 or it.shape[0] != 2 or it.shape[-1] != 3 or it.dtype != np.uint8:
                raise ScorerError(f"item {i}: compact_lrm takes uint8 pairs (2, H, W, 3), got {it.dtype} {it.shape}")
        out = self._predict(tasks, items)
        margin = float(self.params.label_margin)
        first = None
        if self.params.label_from == "progress":  # the swapped pair's current frame is the first frame
            first = self._predict(tasks, [it[::-1] for it in items])["progress"]
        results = []
        for i in range(len(items)):
            comps = {k: float(v[i]) for k, v in out.items()}
            label = (pair_label(comps["contrastive"], margin) if first is None
                     else signed_label(comps["progress"] - float(first[i]), margin))
            results.append(ScoreResult(reward=sum(self._weights[k] * comps[k] for k in COMPONENTS), components=comps,
                                       label=label))
        return results
