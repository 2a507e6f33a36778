"""SYNTHETIC episodes for fast tests and CPU development: NOT a substitute for real evaluation.

A procedural 2-D scene in the :mod:`vlmrl.envs.dataset` format: a coloured square ("the cube")
moves towards a coloured disc ("the goal") on a textured background, seen by a camera with
pixel noise and a small per-frame jitter. Each task text names the cube's and the goal's
colours, so the text matters (the same scene with other colours is another task).

Sources:

* ``demo``        moves straight (with small noise) to the goal, reaches it and stays: success at the end;
* ``noisy_demo``  drifts towards the goal with large noise and a random heading error: may fail;
* ``random``      a random walk that starts away from the goal; fails (success is computed from the
                  geometry, never asserted, so a lucky walk would be marked a success).

``states`` are (cube x, cube y, goal x, goal y) in [0, 1]; ``rewards`` are the dense reward
``1 - distance / initial distance`` (evaluation only); ``success`` is cube-in-goal.
Used by tests across the project (see the ``synthetic_dataset`` fixture in ``tests/conftest.py``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from vlmrl.envs.dataset import Episode, EpisodeWriter

SYNTHETIC_ENV_ID = "Synthetic2DPush-v0"
COLOURS = {
    "red": (220, 40, 40),
    "blue": (40, 70, 230),
    "yellow": (230, 210, 40),
    "green": (40, 190, 70),
    "purple": (150, 50, 200),
}
# task text -> (cube colour, goal colour)
SYNTHETIC_TASKS = {
    "push the red cube onto the green goal": ("red", "green"),
    "push the blue cube onto the yellow goal": ("blue", "yellow"),
    "push the purple cube onto the red goal": ("purple", "red"),
}
SOURCES = ("demo", "noisy_demo", "random")
GOAL_RADIUS = 0.09
CUBE_HALF = 0.06
START_DISTANCE = 0.55


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random texture plus a faint checkerboard, float (size, size, 3) in 0..255."""
    coarse = rng.uniform(60, 160, (6, 6, 3))
    idx = np.linspace(0, 5, size)
    i0 = np.clip(idx.astype(int), 0, 4)
    f = (idx - i0)[:, None]
    rows = coarse[i0] * (1 - f[..., None]) + coarse[i0 + 1] * f[..., None]  # (size, 6, 3)
    g = (idx - i0)[None, :, None]
    img = rows[:, i0] * (1 - g) + rows[:, i0 + 1] * g
    yy, xx = np.mgrid[0:size, 0:size]
    checker = ((yy // max(size // 8, 1) + xx // max(size // 8, 1)) % 2)[..., None] * 12.0
    return img + checker


def _render(bg: np.ndarray, cube: np.ndarray, goal: np.ndarray, cube_rgb, goal_rgb,
            rng: np.random.Generator, noise: float) -> np.ndarray:
    size = bg.shape[0]
    shift = rng.integers(-1, 2, size=2)  # camera jitter, pixels
    coords = (np.arange(size) + 0.5) / size
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    img = bg.copy()
    disc = (xx - goal[0]) ** 2 + (yy - goal[1]) ** 2 <= GOAL_RADIUS ** 2
    img[disc] = 0.35 * img[disc] + 0.65 * np.asarray(goal_rgb, float)
    square = (np.abs(xx - cube[0]) <= CUBE_HALF) & (np.abs(yy - cube[1]) <= CUBE_HALF)
    img[square] = cube_rgb
    img = np.roll(img, tuple(shift), axis=(0, 1))
    img = img + rng.normal(0, noise, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _trajectory(rng: np.random.Generator, source: str, start: np.ndarray, goal: np.ndarray, T: int) -> np.ndarray:
    pos = [start]
    p = start.copy()
    heading_error = rng.normal(0, 0.8)
    for t in range(T):
        to_goal = goal - p
        dist = np.linalg.norm(to_goal)
        if source == "demo":
            # finish with ~15% of the steps to spare, then hold still on the goal
            speed = np.linalg.norm(goal - start) / max(int(0.85 * T), 1)
            step = to_goal / max(dist, 1e-9) * min(speed, dist) + rng.normal(0, 0.003, 2)
        elif source == "noisy_demo":
            c, s = np.cos(heading_error), np.sin(heading_error)
            d = np.array([[c, -s], [s, c]]) @ (to_goal / max(dist, 1e-9))
            step = d * 0.03 + rng.normal(0, 0.025, 2)
            heading_error += rng.normal(0, 0.15)
        elif source == "random":
            step = rng.normal(0, 0.035, 2)
        else:
            raise ValueError(f"unknown synthetic source {source!r}; expected one of {SOURCES}")
        p = np.clip(p + step, 0.08, 0.92)
        pos.append(p.copy())
    return np.stack(pos).astype(np.float32)


def make_synthetic_episode(seed: int, task: str | None = None, source: str = "demo",
                           num_steps: int = 24, image_size: int = 48, frame_every: int = 1,
                           pixel_noise: float = 6.0) -> Episode:
    """One synthetic episode; everything is a function of ``seed`` (and the arguments)."""
    if source not in SOURCES:
        raise ValueError(f"unknown synthetic source {source!r}; expected one of {SOURCES}")
    if num_steps < 2 or image_size < 16 or frame_every < 1:
        raise ValueError("need num_steps >= 2, image_size >= 16 and frame_every >= 1")
    rng = np.random.default_rng(seed)
    if task is None:
        task = list(SYNTHETIC_TASKS)[seed % len(SYNTHETIC_TASKS)]
    if task not in SYNTHETIC_TASKS:
        raise ValueError(f"unknown synthetic task {task!r}; known: {list(SYNTHETIC_TASKS)}")
    cube_c, goal_c = SYNTHETIC_TASKS[task]
    while True:  # start at a fixed distance from the goal (so progress is visible in one frame)
        goal, angle = rng.uniform(0.15, 0.85, 2), rng.uniform(0, 2 * np.pi)
        start = goal + START_DISTANCE * np.array([np.cos(angle), np.sin(angle)])
        if np.all((start >= 0.1) & (start <= 0.9)):
            break
    pos = _trajectory(rng, source, start, goal, num_steps)
    dist = np.linalg.norm(pos - goal, axis=1)
    success = dist <= GOAL_RADIUS * 0.8
    rewards = (1.0 - dist[1:] / dist[0]).astype(np.float32)
    frame_steps = np.arange(0, num_steps + 1, frame_every, dtype=np.int32)
    if frame_steps[-1] != num_steps:
        frame_steps = np.append(frame_steps, np.int32(num_steps))
    bg = _background(rng, image_size)
    frames = np.stack([_render(bg, pos[s], goal, COLOURS[cube_c], COLOURS[goal_c], rng, pixel_noise)
                       for s in frame_steps])
    states = np.concatenate([pos, np.broadcast_to(goal, pos.shape)], axis=1).astype(np.float32)
    actions = np.diff(pos, axis=0).astype(np.float32)
    return Episode(task=task, env_id=SYNTHETIC_ENV_ID, frames=frames, frame_steps=frame_steps,
                   states=states, actions=actions, rewards=rewards, success=success, source=source,
                   seed=seed, meta={"synthetic": True}).validate()


def write_synthetic_dataset(root: str | os.PathLike, num_episodes: int,
                            sources: Sequence[str] = SOURCES, seed: int = 0, **episode_kwargs) -> Path:
    """Write ``num_episodes`` synthetic episodes (sources and tasks cycled) into a dataset folder."""
    writer = EpisodeWriter(root)
    for i in range(num_episodes):
        writer.write(make_synthetic_episode(seed=seed * 100_003 + i, source=sources[i % len(sources)],
                                            **episode_kwargs))
    return Path(root)
