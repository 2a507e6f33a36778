"""The task registry: which ManiSkill environment a task name means and how it is described in words.

A VLM reward scores frames against a task *text*, so each task carries several paraphrases.
``seen`` texts are used for training (demo recording samples from them, actors use them);
``unseen`` texts are held out to test whether a reward model generalises to new wordings.
All env ids below exist in ManiSkill 3.0.1 and have a motion-planning solution there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np


@dataclass(frozen=True)
class TaskSpec:
    """One manipulation task: its ManiSkill env id and its language descriptions for the reward models."""

    name: str
    env_id: str
    seen: Tuple[str, ...]
    """Paraphrases used in training and demo recording."""
    unseen: Tuple[str, ...]
    """Held-out paraphrases for language-generalisation tests; never used in training."""
    max_episode_steps: int
    """ManiSkill's registered episode limit for this env."""
    has_motion_planner: bool = True
    """ManiSkill ships a Panda motion-planning solution for it (used by ``vlmrl record-demos``)."""

    def texts(self, split: str = "seen") -> Tuple[str, ...]:
        if split == "seen":
            return self.seen
        if split == "unseen":
            return self.unseen
        if split == "all":
            return self.seen + self.unseen
        raise ValueError(f"task text split must be 'seen', 'unseen' or 'all', got {split!r}")

    def sample_text(self, rng: np.random.Generator, split: str = "seen") -> str:
        texts = self.texts(split)
        return texts[int(rng.integers(len(texts)))]


TASKS: Dict[str, TaskSpec] = {t.name: t for t in (
    TaskSpec(
        name="PushCube-v1", env_id="PushCube-v1", max_episode_steps=50,
        seen=("push the cube to the red and white target",
              "push the blue cube onto the goal region",
              "slide the cube forward until it sits on the target",
              "move the cube to the target by pushing it"),
        unseen=("shove the block over to the bullseye",
                "nudge the cube so that it ends up on the circular target")),
    TaskSpec(
        name="PickCube-v1", env_id="PickCube-v1", max_episode_steps=50,
        seen=("pick up the red cube and move it to the green goal",
              "grasp the cube and lift it to the target position",
              "pick the cube up and hold it at the goal point",
              "lift the red cube to the green marker"),
        unseen=("take hold of the block and raise it to the green sphere",
                "grab the cube and bring it up to the goal location in the air")),
    TaskSpec(
        name="StackCube-v1", env_id="StackCube-v1", max_episode_steps=50,
        seen=("stack the red cube on top of the green cube",
              "pick up the red cube and place it on the green cube",
              "put the red block onto the green block",
              "place the red cube on the green one and let go"),
        unseen=("build a tower by setting the red block on the green block",
                "lay the red cube on top of the green cube and release it")),
    TaskSpec(
        name="PullCube-v1", env_id="PullCube-v1", max_episode_steps=50,
        seen=("pull the cube back to the red and white target",
              "pull the blue cube towards the robot onto the goal region",
              "drag the cube backwards until it sits on the target",
              "move the cube to the target by pulling it"),
        unseen=("draw the block toward the robot base onto the bullseye",
                "haul the cube back so it ends up on the circular target")),
    TaskSpec(
        name="PegInsertionSide-v1", env_id="PegInsertionSide-v1", max_episode_steps=100,
        seen=("insert the peg into the hole in the box",
              "pick up the peg and push it sideways into the hole",
              "grasp the peg and insert it into the side hole",
              "put the peg into the box's hole from the side"),
        unseen=("slot the stick horizontally into the opening of the block",
                "fit the peg into the hole on the side of the box")),
)}


def get_task(name: str) -> TaskSpec:
    """The task registered under ``name`` (also accepts its env id); a clear error lists the known ones."""
    if name in TASKS:
        return TASKS[name]
    for t in TASKS.values():
        if t.env_id == name:
            return t
    raise KeyError(f"unknown task {name!r}; registered tasks: {sorted(TASKS)}")


def find_task_for_text(text: str) -> Optional[TaskSpec]:
    """The task one of whose texts (seen or unseen) is exactly ``text``, or None."""
    for t in TASKS.values():
        if text in t.seen or text in t.unseen:
            return t
    return None
