"""Prompt templates of the ``lrm`` scorer as data: which question each reward head asks, and how its answer is read.

A template is a YAML file (``models/templates/<name>.yaml``, or any path) holding, for each head
(``progress``, ``completion``, ``contrastive``), the question text, which frames it shows, and its answer
format; the file format is documented in README.md ("Prompt templates"). Two answer modes:

* ``logits``: the answer is a short set of candidate strings; the backend scores each candidate's
  log-probability at the answer position (one prefill), and the head's value is the expectation of the
  candidates' ``values`` under the candidate distribution (e.g. P(yes), or expected 0..10 rating / 10).
* ``generate``: the answer is free text (a JSON object, a number); the backend generates it greedily (at most
  ``max_new_tokens``, optionally constrained to ``allowed_chars`` and started with a forced ``prefix``) and
  :meth:`GenerateAnswer.parse` turns it into a value. Answers that do not parse raise, or take the template's
  declared ``on_unparsed`` value and are counted by the scorer.

A template's ``name`` and ``version`` go into the scorer's ``model_version``, so reward caches never mix
answers to different prompts.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

HEADS = ("progress", "completion", "contrastive")
"""The LRM reward heads, in the order the scorer reports them."""

TEMPLATE_DIR = Path(__file__).parent / "templates"
FRAMES = ("previous", "current")
IMAGE_MARK = "<image>"


class TemplateError(ValueError):
    """A template file is missing or malformed; the message names the file and the field."""


@dataclass(frozen=True)
class LogitAnswer:
    """Answer read from candidate logits: value = sum_i P(candidate_i) * values_i (P renormalised over candidates)."""

    candidates: Union[Tuple[str, ...], str]
    """The candidate answers, or ``"scale"`` = "0", "1", ..., str(progress_scale)."""
    values: Union[Tuple[float, ...], str]
    """One value per candidate, or ``"linear"`` = i / (n - 1)."""
    single_token: bool = False
    """Assert that every candidate is one token of the model's tokenizer (checked when the worker starts)."""

    mode = "logits"

    def candidate_list(self, scale: int) -> Tuple[str, ...]:
        return tuple(str(i) for i in range(scale + 1)) if self.candidates == "scale" else tuple(self.candidates)

    def value_list(self, n: int) -> Tuple[float, ...]:
        return tuple(i / (n - 1) for i in range(n)) if self.values == "linear" else tuple(self.values)


@dataclass(frozen=True)
class GenerateAnswer:
    """Answer read from a short greedy generation by a parser: a JSON field or the whole text, then a choice
    table (case-insensitive) or a number in ``number`` = [lo, hi] mapped to (x - lo) / (hi - lo)."""

    max_new_tokens: int
    prefix: str = ""
    """Forced start of the answer (appended after the assistant turn opens); the model continues it."""
    allowed_chars: Optional[str] = None
    """Constrained decoding: only tokens made of these characters (and end-of-turn) may be generated."""
    field: Optional[str] = None
    """Read the value of this JSON field (the last ``"field": value`` in the text); None: the whole text."""
    regex: Optional[str] = None
    """Read the first group of this regex's last match in the text instead of a JSON field."""
    choices: Optional[Tuple[Tuple[str, float], ...]] = None
    number: Optional[Tuple[float, float]] = None
    on_unparsed: Optional[float] = None
    """Value of an answer that does not parse; None: the scorer raises (the batch fails loudly)."""

    mode = "generate"

    def extract(self, text: str) -> Optional[str]:
        """The raw answer string inside ``text`` (JSON field / regex group / whole text), or None."""
        text = self.prefix + text
        if self.regex is not None:
            found = list(re.finditer(self.regex, text))
            return found[-1].group(1).strip() if found else None
        if self.field is None:
            return text.strip()
        for m in reversed(list(re.finditer(r"\{[^{}]*\}", text))):
            try:
                obj = json.loads(m.group(0))
            except ValueError:
                continue
            if isinstance(obj, dict) and self.field in obj:
                return str(obj[self.field]).strip()
        found = list(re.finditer(r'"%s"\s*:\s*"?([^",}\s]+)"?' % re.escape(self.field), text))
        return found[-1].group(1).strip() if found else None

    def parse(self, text: str) -> Optional[float]:
        """The head's value for a generated answer, or None when it does not parse."""
        raw = self.extract(text)
        if raw is None:
            return None
        for key, value in self.choices or ():
            if raw.lower() == key.lower():
                return value
        if self.number is not None:
            try:
                x = float(raw)
            except ValueError:
                return None
            lo, hi = self.number
            if not math.isfinite(x) or not lo <= x <= hi:
                return None
            return (x - lo) / (hi - lo)
        return None


@dataclass(frozen=True)
class Question:
    """One head's question: text with ``{task}`` (and ``{scale}``), the frames it shows, and its answer."""

    head: str
    text: str
    images: Tuple[str, ...]
    answer: Union[LogitAnswer, GenerateAnswer]
    strip_segments: bool = False

    def fill(self, task: str, scale: int) -> str:
        return self.text.replace("{task}", task).replace("{scale}", str(scale))

    def content(self, task: str, scale: int) -> List[Dict[str, Any]]:
        """User-turn content: images first then the text, or images at the text's ``<image>`` marks."""
        text = self.fill(task, scale)
        if IMAGE_MARK not in text:
            return [{"type": "image"} for _ in self.images] + [{"type": "text", "text": text}]
        out: List[Dict[str, Any]] = []
        parts = text.split(IMAGE_MARK)
        for i, seg in enumerate(parts):
            seg = seg.strip() if self.strip_segments else seg
            if seg.strip():
                out.append({"type": "text", "text": seg})
            if i < len(parts) - 1:
                out.append({"type": "image"})
        return out


@dataclass(frozen=True)
class PromptTemplate:
    """A model family's LRM questions (one per head), its optional system prompt, name and version."""

    name: str
    version: str
    system: Optional[str]
    questions: Mapping[str, Question]
    source: str = ""

    @property
    def tag(self) -> str:
        """``name.version``: what the scorer puts into ``model_version``."""
        return f"{self.name}.{self.version}"

    def request(self, head: str, task: str, previous, current, scale: int = 10):
        """The :class:`VLMRequest` of ``head`` about (previous, current) frames."""
        from vlmrl.reward_workers.backends.base import VLMRequest

        q = self.questions[head]
        frames = {"previous": previous, "current": current}
        messages = [] if self.system is None else [{"role": "system", "content": [{"type": "text", "text": self.system}]}]
        messages.append({"role": "user", "content": q.content(task, scale)})
        a = q.answer
        if isinstance(a, LogitAnswer):
            return VLMRequest(messages, [frames[f] for f in q.images], a.candidate_list(scale))
        return VLMRequest(messages, [frames[f] for f in q.images], (), answer_prefix=a.prefix)


# ---- loading -----------------------------------------------------------------------------------------
def template_path(name_or_path: str) -> Path:
    """A template name (``default``, ``lrm_released``: files in ``models/templates/``) or a YAML path."""
    p = Path(name_or_path).expanduser()
    if p.suffix in (".yaml", ".yml") or p.parent != Path("."):
        return p
    return TEMPLATE_DIR / f"{name_or_path}.yaml"


def available_templates() -> List[str]:
    return sorted(p.stem for p in TEMPLATE_DIR.glob("*.yaml"))


def load_template(name_or_path: str) -> PromptTemplate:
    """Read and check a template file (cached per path and modification time)."""
    path = template_path(name_or_path)
    if not path.is_file():
        raise TemplateError(f"template {name_or_path!r}: no file {path} (built-in templates: {available_templates()})")
    return _load(str(path.resolve()), path.stat().st_mtime_ns)


@lru_cache(maxsize=32)
def _load(path: str, _mtime: int) -> PromptTemplate:
    import yaml

    where = f"template {path}"
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as e:
        raise TemplateError(f"{where}: not valid YAML: {' '.join(str(e).split())}") from e
    if not isinstance(raw, dict):
        raise TemplateError(f"{where}: must be a mapping with name, version, system, questions")
    _only(raw, {"name", "version", "source", "system", "questions"}, where)
    for key in ("name", "version"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise TemplateError(f"{where}: {key!r} must be a non-empty string")
    system = raw.get("system")
    if system is not None and not isinstance(system, str):
        raise TemplateError(f"{where}: 'system' must be a string or null")
    qs = raw.get("questions")
    if not isinstance(qs, dict) or set(qs) != set(HEADS):
        raise TemplateError(f"{where}: 'questions' must have exactly the heads {list(HEADS)}, got "
                            f"{sorted(qs) if isinstance(qs, dict) else qs!r}")
    questions = {h: _question(h, qs[h], f"{where}: questions.{h}") for h in HEADS}
    return PromptTemplate(raw["name"], raw["version"], system, questions, str(raw.get("source", "")))


def _only(d: Mapping, allowed: set, where: str) -> None:
    extra = set(d) - allowed
    if extra:
        raise TemplateError(f"{where}: unknown keys {sorted(extra)}; allowed: {sorted(allowed)}")


def _question(head: str, raw: Any, where: str) -> Question:
    if not isinstance(raw, dict):
        raise TemplateError(f"{where}: must be a mapping with text, images, answer")
    _only(raw, {"text", "images", "answer", "strip_segments"}, where)
    text, images = raw.get("text"), raw.get("images")
    if not isinstance(text, str) or "{task}" not in text:
        raise TemplateError(f"{where}.text must be a string containing {{task}}")
    if not isinstance(images, list) or not images or any(f not in FRAMES for f in images):
        raise TemplateError(f"{where}.images must be a non-empty list of {list(FRAMES)}, got {images!r}")
    if IMAGE_MARK in text and text.count(IMAGE_MARK) != len(images):
        raise TemplateError(f"{where}.text has {text.count(IMAGE_MARK)} {IMAGE_MARK} marks for {len(images)} images")
    return Question(head, text, tuple(images), _answer(raw.get("answer"), f"{where}.answer"),
                    bool(raw.get("strip_segments", False)))


def _answer(raw: Any, where: str) -> Union[LogitAnswer, GenerateAnswer]:
    if not isinstance(raw, dict) or raw.get("mode") not in ("logits", "generate"):
        raise TemplateError(f"{where}: must be a mapping with mode: logits or mode: generate")
    if raw["mode"] == "logits":
        _only(raw, {"mode", "candidates", "values", "single_token"}, where)
        cands, values = raw.get("candidates"), raw.get("values")
        if cands != "scale" and (not isinstance(cands, list) or len(cands) < 2
                                 or not all(isinstance(c, str) and c for c in cands)):
            raise TemplateError(f"{where}.candidates must be 'scale' or a list of >= 2 non-empty strings (quote "
                                f"yes/no in YAML), got {cands!r}")
        if values != "linear":
            if not isinstance(values, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                       for v in values):
                raise TemplateError(f"{where}.values must be 'linear' or a list of numbers, got {values!r}")
            if cands == "scale" or len(values) != len(cands):
                raise TemplateError(f"{where}.values needs one number per candidate")
        return LogitAnswer(cands if cands == "scale" else tuple(cands),
                           values if values == "linear" else tuple(float(v) for v in values),
                           bool(raw.get("single_token", False)))
    _only(raw, {"mode", "max_new_tokens", "prefix", "allowed_chars", "field", "regex", "choices", "number",
                "on_unparsed"}, where)
    n = raw.get("max_new_tokens")
    if not isinstance(n, int) or n < 1:
        raise TemplateError(f"{where}.max_new_tokens must be an integer >= 1, got {n!r}")
    if raw.get("field") is not None and raw.get("regex") is not None:
        raise TemplateError(f"{where}: give 'field' or 'regex', not both")
    if raw.get("regex") is not None:
        try:
            if re.compile(raw["regex"]).groups < 1:
                raise TemplateError(f"{where}.regex needs one capturing group")
        except re.error as e:
            raise TemplateError(f"{where}.regex is not a regex: {e}") from e
    choices = raw.get("choices")
    if choices is not None and (not isinstance(choices, dict) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) for k, v in choices.items())):
        raise TemplateError(f"{where}.choices must map answer strings to numbers (quote yes/no in YAML), got {choices!r}")
    number = raw.get("number")
    if number is not None and (not isinstance(number, list) or len(number) != 2 or not number[0] < number[1]):
        raise TemplateError(f"{where}.number must be [lo, hi] with lo < hi, got {number!r}")
    if choices is None and number is None:
        raise TemplateError(f"{where}: give 'choices' and/or 'number' to turn the answer into a value")
    allowed = raw.get("allowed_chars")
    if allowed is not None and (not isinstance(allowed, str) or not allowed):
        raise TemplateError(f"{where}.allowed_chars must be a non-empty string")
    unparsed = raw.get("on_unparsed")
    if unparsed is not None and (not isinstance(unparsed, (int, float)) or isinstance(unparsed, bool)):
        raise TemplateError(f"{where}.on_unparsed must be a number or null (raise), got {unparsed!r}")
    return GenerateAnswer(
        max_new_tokens=n, prefix=str(raw.get("prefix") or ""), allowed_chars=allowed, field=raw.get("field"),
        regex=raw.get("regex"), choices=tuple((k, float(v)) for k, v in choices.items()) if choices else None,
        number=(float(number[0]), float(number[1])) if number else None,
        on_unparsed=None if unparsed is None else float(unparsed))


def lrm_requests(task: str, prev, cur, progress_scale: int = 10, template: str = "default"):
    """The three LRM prompts about (previous, current) frames, in order progress, completion, contrastive.
    The ``lrm`` scorer asks them; LoRA training (``vlmrl.learner.reward_training.lrm_lora``) teaches their answers with
    the same requests."""
    t = load_template(template)
    return [t.request(h, task, prev, cur, progress_scale) for h in HEADS]


def expected_value(probs: Sequence[float], values: Sequence[float]) -> float:
    """The expectation of ``values`` under the candidate distribution ``probs``."""
    return float(sum(p * v for p, v in zip(probs, values)))
