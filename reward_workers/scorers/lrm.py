"""``lrm``: Large-Reward-Model rewards from VLMs (progress, completion, contrastive), one model per head if wanted.

One PAIR item (previous frame, current frame) gives all three rewards of the LRM paper, each from its
reward head:

* progress: how far along the task is in the current frame, in [0, 1];
* completion: whether the task is complete in the current frame (P(yes), or the parsed yes/no);
* contrastive: whether the current frame is further along than the previous one (P(current), in [0, 1]).

Each head asks its question from a prompt template (``templates/<name>.yaml``, see
:mod:`.prompt_templates`): the project's own questions (``default``, answers read from candidate logits)
or, e.g., the released LRM checkpoints' (``lrm_released``, answers generated and parsed). Each head runs on
its own model + adapter (``heads.<head>.model`` / ``.adapter``, defaulting to the scorer's ``model`` /
``adapter``); heads on the same model folder share one loaded copy, their adapters switched per call.

``reward`` = ``weights.progress * progress + weights.completion * completion + weights.contrastive * contrastive``.
Heads on the same model and adapter send their prompts to the backend together (padded forwards, micro-batched).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from vlmrl.reward_workers.scorers.base import ItemKind, Scorer, ScoreResult, ScorerError, register_scorer
from vlmrl.reward_workers.models.prompt_templates import (
    HEADS,
    GenerateAnswer,
    LogitAnswer,
    PromptTemplate,
    TemplateError,
    expected_value,
    load_template,
)
from vlmrl.reward_workers.scorers.vlm_common import VLMBackendParams, HeadModel, check_items, load_head_models, probs

log = logging.getLogger(__name__)


@dataclass
class LrmWeights:
    """Weights of the three LRM rewards in the scalar ``reward``."""

    progress: float = 1.0
    completion: float = 0.0
    contrastive: float = 0.0


@dataclass
class LrmHead:
    """One reward head's model, adapter and prompt template; unset fields fall back to the scorer's own."""

    model: Optional[str] = None
    """VLM folder of this head (None: ``scorer.params.model``). Heads with the same folder share one copy."""
    adapter: Optional[str] = None
    """peft LoRA adapter of this head. None: ``scorer.params.adapter`` if the head runs ``scorer.params.model``,
    else none; ``""``: none."""
    template: Optional[str] = None
    """Prompt template name (``templates/<name>.yaml``) or YAML path (None: ``scorer.params.template``)."""


@dataclass
class LrmHeads:
    """Per-head overrides of the ``lrm`` scorer (``scorer.params.heads.<head>.model`` etc.)."""

    progress: LrmHead = field(default_factory=LrmHead)
    completion: LrmHead = field(default_factory=LrmHead)
    contrastive: LrmHead = field(default_factory=LrmHead)


@dataclass
class _Head:
    name: str
    template: PromptTemplate
    view: object  # AdapterView

    @property
    def answer(self):
        return self.template.questions[self.name].answer


@register_scorer
class LrmScorer(Scorer):
    """Scores (previous, current) frame pairs into progress/completion/contrastive rewards, each head asking its
    template's question of its own (LoRA-adapted) VLM."""

    name = "lrm"
    item_kind = ItemKind.PAIR

    @dataclass
    class Params(VLMBackendParams):
        weights: LrmWeights = field(default_factory=LrmWeights)
        """Weighted sum that makes ``reward`` from the three components."""
        progress_scale: int = 10
        """``{scale}`` of the templates: the default progress question's answers are 0..progress_scale."""
        template: str = "default"
        """Prompt template of every head (``default``, ``lrm_released``, or a YAML path); per head: heads.<h>.template."""
        heads: LrmHeads = field(default_factory=LrmHeads)
        """Per-head model / adapter / template (defaults: the fields above)."""
        memory_check: bool = True
        """At worker start, refuse heads whose models (estimated) do not fit the device's free memory."""
        memory_budget_gb: Optional[float] = None
        """Memory the heads' models may take on their device (None: its free memory at worker start)."""
        memory_headroom: float = 0.2
        """Activation/KV-cache allowance over the weights in the memory check (0.2 = +20%)."""

    def __init__(self, params: "LrmScorer.Params") -> None:
        super().__init__(params)
        if params.progress_scale < 1:
            raise ScorerError(f"lrm: progress_scale must be >= 1, got {params.progress_scale}")
        specs, templates = [], {}
        for h in HEADS:
            hp: LrmHead = getattr(params.heads, h)
            key = f"scorer.params.heads.{h}"
            name = hp.template or params.template
            try:
                templates[h] = load_template(name)
            except TemplateError as e:
                raise ScorerError(f"scorer 'lrm' head {h!r}: {e}; fix: set {key}.template or scorer.params.template "
                                  f"to a valid template") from e
            model = hp.model or params.model
            adapter = hp.adapter if hp.adapter is not None else (params.adapter if not hp.model else None)
            specs.append(HeadModel(h, model, adapter or None, key))
        views = load_head_models(params, specs, self.name, params.memory_check, params.memory_budget_gb,
                                 params.memory_headroom)
        self.heads = [_Head(h, templates[h], views[h]) for h in HEADS]
        self._backends = list({id(v.backend): v.backend for v in views.values()}.values())
        for head in self.heads:
            self._check_answers(head)

    def _check_answers(self, head: _Head) -> None:
        """The template's answers must tokenize as it says with this head's tokenizer (one-line error if not)."""
        from vlmrl.reward_workers.backends.base import BackendError

        a, where = head.answer, f"scorer 'lrm' head {head.name!r} (template {head.template.tag})"
        fix = f"fix: choose another template for this model (scorer.params.heads.{head.name}.template) or edit it"
        if isinstance(a, LogitAnswer):
            cands = a.candidate_list(self.params.progress_scale)
            try:
                ids = head.view.candidate_ids(cands)
            except BackendError as e:
                raise ScorerError(f"{where}: {e}; {fix}") from e
            multi = [c for c, s in zip(cands, ids) if len([t for t in s if t != head.view.backend.end_token_id]) != 1]
            if a.single_token and multi:
                raise ScorerError(f"{where}: logit scoring needs single-token answers but {multi} are not one token "
                                  f"for this model's tokenizer; {fix}")
        elif a.allowed_chars is not None and not head.view.allowed_token_ids(a.allowed_chars):
            raise ScorerError(f"{where}: no token of this model's tokenizer is made of allowed_chars "
                              f"{a.allowed_chars!r}; {fix}")

    @property
    def backend(self):
        """The one loaded backend when every head runs on the same model folder (its ``timings`` cover all heads),
        else None."""
        return self._backends[0] if len(self._backends) == 1 else None

    @property
    def model_id(self) -> str:
        ids = {h.name: h.view.model_id for h in self.heads}
        return ids["progress"] if len(set(ids.values())) == 1 else ";".join(f"{k}={v}" for k, v in ids.items())

    @property
    def model_version(self) -> str:
        """Weights hash + template tag; one pair when all heads agree, else a hash of every head's plus the tags."""
        pairs = [(h.view.model_version, h.template.tag) for h in self.heads]
        if len(set(pairs)) == 1:
            return f"{pairs[0][0]}-{pairs[0][1]}"
        digest = hashlib.sha256(repr(pairs).encode()).hexdigest()[:16]
        return f"{digest}-{'+'.join(sorted({t for _, t in pairs}))}"

    def score_batch(self, tasks: Sequence[str], items: Sequence[np.ndarray]) -> list[ScoreResult]:
        check_items(self.name, tasks, items, 2)
        items = [np.asarray(it) for it in items]
        n, scale = len(items), self.params.progress_scale
        values: Dict[str, List[float]] = {}
        unparsed = np.zeros(n, dtype=np.int64)
        logit_groups: Dict[int, List[_Head]] = {}
        for head in self.heads:
            if isinstance(head.answer, LogitAnswer):
                logit_groups.setdefault(id(head.view), []).append(head)
            else:
                values[head.name] = self._generate_head(head, tasks, items, unparsed)
        for group in logit_groups.values():  # heads on one model + adapter: one padded call, item-major
            reqs = [h.template.request(h.name, t, it[0], it[1], scale) for t, it in zip(tasks, items) for h in group]
            logps = group[0].view.score_candidates(reqs)
            for j, h in enumerate(group):
                vals = h.answer.value_list(len(h.answer.candidate_list(scale)))
                values[h.name] = [expected_value(probs(logps[i * len(group) + j]), vals) for i in range(n)]
        w = self.params.weights
        has_generate = any(isinstance(h.answer, GenerateAnswer) for h in self.heads)
        out = []
        for i in range(n):
            comps = {h: float(values[h][i]) for h in HEADS}
            if has_generate:
                comps["unparsed"] = float(unparsed[i])
            reward = w.progress * comps["progress"] + w.completion * comps["completion"] + w.contrastive * comps["contrastive"]
            out.append(ScoreResult(reward=float(reward), components=comps))
        return out

    def _generate_head(self, head: _Head, tasks, items, unparsed: np.ndarray) -> List[float]:
        a: GenerateAnswer = head.answer
        reqs = [head.template.request(head.name, t, it[0], it[1], self.params.progress_scale)
                for t, it in zip(tasks, items)]
        texts = head.view.generate(reqs, a.max_new_tokens, a.allowed_chars)
        vals = []
        for i, text in enumerate(texts):
            v = a.parse(text)
            if v is None:
                if a.on_unparsed is None:
                    raise ScorerError(f"scorer 'lrm' head {head.name!r}: answer {text[:200]!r} does not parse "
                                      f"(template {head.template.tag} has no on_unparsed value)")
                log.warning("lrm head %r: unparsed answer %r -> %s", head.name, text[:200], a.on_unparsed)
                v = a.on_unparsed
                unparsed[i] += 1
            vals.append(float(v))
        return vals

    def close(self) -> None:
        for b in self._backends:
            b.close()
