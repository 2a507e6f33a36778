"""The prompt texts of every VLM scorer, in one place and versioned.

Change any text here -> bump :data:`PROMPT_VERSION` (scorers put it in ``model_version``, so reward
caches and logged rewards never mix answers to different prompts). Answers are read from the
model's logits at the answer position, so each prompt tells the model the exact answer format.

The ``lrm`` scorer's questions are data: ``templates/<name>.yaml`` (see :mod:`.prompt_templates`); the
``LRM_*`` names below are the default template's texts, kept for the LoRA trainer and its tests.
"""

from __future__ import annotations

from typing import Any, Dict, List

from vlmrl.reward_workers.models.prompt_templates import load_template

PROMPT_VERSION = "p1"

# --- LRM (Large Reward Models): progress, completion, temporal contrastive ---------------------
# The default template's texts (templates/default.yaml), as plain strings with {task} / {scale} fields.
_LRM_DEFAULT = load_template("default")
SYSTEM = _LRM_DEFAULT.system
"""The default template's system prompt; every VLM scorer's :func:`chat` sends it."""
LRM_PROGRESS = _LRM_DEFAULT.questions["progress"].text
LRM_COMPLETION = _LRM_DEFAULT.questions["completion"].text
LRM_COMPLETION_ANSWERS = _LRM_DEFAULT.questions["completion"].answer.candidate_list(1)  # ("yes", "no")
LRM_CONTRASTIVE = _LRM_DEFAULT.questions["contrastive"].text
LRM_CONTRASTIVE_ANSWERS = _LRM_DEFAULT.questions["contrastive"].answer.candidate_list(1)  # A = previous, B = current

# --- RL-VLM-F preference -----------------------------------------------------------------------
PREFERENCE = (
    "The task is: {task}\nHere are two images of the robot, image 1 and image 2. Which image is closer to "
    "achieving the task? Answer 1 if the first image, 2 if the second image, 0 if there is no difference."
)
PREFERENCE_ANSWERS = ("1", "2", "0")  # first, second, none

# --- RG-VLM window (two-stage) -----------------------------------------------------------------
WINDOW_DESCRIBE = (
    "The task is: {task}\nThese are {n} consecutive frames of a robot episode, oldest first{layout_note}. "
    "Describe the visual change between the frames: which objects moved, what the gripper did, "
    "and whether the object is now closer to the goal."
)
WINDOW_SCORE_AFTER_DESCRIPTION = (
    "Based on the description, score the progress of this segment toward the task from 0 to {scale}. "
    "Answer with a single number."
)
WINDOW_SCORE_SINGLE = (
    "The task is: {task}\nThese are {n} consecutive frames of a robot episode, oldest first{layout_note}. "
    "Score the progress of this segment toward the task from 0 to {scale}. Answer with a single number."
)
GRID_NOTE = ", tiled left to right and top to bottom in one image"


def scale_answers(scale: int) -> tuple[str, ...]:
    """The answers of a 0..scale rating question ("0", "1", ..., "10")."""
    return tuple(str(i) for i in range(scale + 1))


def user_turn(n_images: int, text: str) -> Dict[str, Any]:
    """A user message with ``n_images`` image slots followed by ``text``."""
    return {"role": "user", "content": [{"type": "image"} for _ in range(n_images)] + [{"type": "text", "text": text}]}


def chat(*turns: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The messages of one request: the system prompt, then ``turns``."""
    return [{"role": "system", "content": [{"type": "text", "text": SYSTEM}]}, *turns]
