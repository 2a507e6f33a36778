"""``window``: RG-VLM progress reward of a window of w consecutive frames.

Layouts: ``images`` (the w frames as w images of one message) or ``grid`` (tiled into one image).
Prompts: ``two_stage`` (RG-VLM): stage 1 generates a description of the visual transition (greedy,
at most ``max_new_tokens``), stage 2 appends it and scores progress 0..10 by prompt logits;
``single_stage`` (ablation) asks for the score directly. ``reward`` = expected score / 10, in [0, 1].

Token-overflow guard: the visual tokens of each request are computed from the image processor
(patch and merge sizes, pixel caps) before anything runs; above ``max_visual_tokens`` the request
either fails (``on_overflow: error``) or its frames are shrunk until it fits (``downscale``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Sequence

import numpy as np

from vlmrl.reward_workers.models import prompts as P
from vlmrl.reward_workers.scorers.base import ItemKind, Scorer, ScoreResult, ScorerError, register_scorer
from vlmrl.reward_workers.scorers.vlm_common import VLMBackendParams, check_items, expected_scale, make_backend

WINDOW_SIZES = (4, 8, 16)
SCALE = 10


def tile_grid(frames: np.ndarray) -> np.ndarray:
    """Tile ``(w, H, W, 3)`` frames row-major into one image of ceil(sqrt(w)) columns (black filler)."""
    w, h, wd, c = frames.shape
    cols = math.ceil(math.sqrt(w))
    rows = math.ceil(w / cols)
    grid = np.zeros((rows * h, cols * wd, c), dtype=frames.dtype)
    for i in range(w):
        r, q = divmod(i, cols)
        grid[r * h:(r + 1) * h, q * wd:(q + 1) * wd] = frames[i]
    return grid


def resize(image: np.ndarray, scale: float) -> np.ndarray:
    from PIL import Image

    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))


@register_scorer
class WindowScorer(Scorer):
    """Scores how much a w-frame window progressed toward the task (RG-VLM, two-stage prompting)."""

    name = "window"
    item_kind = ItemKind.WINDOW

    @dataclass
    class Params(VLMBackendParams):
        window_size: int = 8
        """Frames per item: 4, 8 or 16. Requests with another count are invalid."""
        layout: str = "images"
        """``images`` (w images in one message) or ``grid`` (frames tiled into one image)."""
        prompt: str = "two_stage"
        """``two_stage`` (describe, then score) or ``single_stage`` (score directly; ablation)."""
        max_new_tokens: int = 64
        """Bound on the stage-1 description length."""
        max_visual_tokens: int = 2048
        """Most visual tokens one request may use (guards the context window)."""
        on_overflow: str = "error"
        """Over ``max_visual_tokens``: ``error`` (the item fails with the numbers) or ``downscale`` (shrink frames)."""

    def __init__(self, params: "WindowScorer.Params") -> None:
        super().__init__(params)
        p = params
        for key, value, allowed in (("window_size", p.window_size, WINDOW_SIZES), ("layout", p.layout, ("images", "grid")),
                                    ("prompt", p.prompt, ("two_stage", "single_stage")),
                                    ("on_overflow", p.on_overflow, ("error", "downscale"))):
            if value not in allowed:
                raise ScorerError(f"window: {key} must be one of {list(allowed)}, got {value!r}")
        if p.max_new_tokens < 1 or p.max_visual_tokens < 1:
            raise ScorerError("window: max_new_tokens and max_visual_tokens must be >= 1")
        self.backend = make_backend(p, self.name)

    @property
    def model_id(self) -> str:
        return self.backend.model_id

    @property
    def model_version(self) -> str:
        return f"{self.backend.model_version}-{P.PROMPT_VERSION}"

    @property
    def frames_per_item(self) -> int:
        return self.params.window_size

    # ---- images ---------------------------------------------------------------------------------
    def layout_images(self, frames: np.ndarray) -> List[np.ndarray]:
        return [tile_grid(frames)] if self.params.layout == "grid" else list(frames)

    def visual_tokens(self, images: Sequence[np.ndarray]) -> int:
        return int(sum(self.backend.visual_tokens([im.shape[:2] for im in images])))

    def fit_images(self, frames: np.ndarray) -> List[np.ndarray]:
        """The request's images, within ``max_visual_tokens`` (or a ScorerError with the numbers)."""
        budget = self.params.max_visual_tokens
        images = self.layout_images(frames)
        needed = self.visual_tokens(images)
        if needed <= budget:
            return images
        if self.params.on_overflow == "error":
            raise ScorerError(
                f"window: {len(frames)} frames of {frames.shape[1]}x{frames.shape[2]} ({self.params.layout} layout) need "
                f"{needed} visual tokens, over max_visual_tokens={budget}; use smaller frames, a smaller window, "
                f"layout=grid or on_overflow=downscale")
        scale = 1.0
        for _ in range(30):
            scale *= min(0.9, math.sqrt(budget / needed))
            images = self.layout_images(np.stack([resize(f, scale) for f in frames]))
            needed = self.visual_tokens(images)
            if needed <= budget:
                return images
            if min(frames.shape[1:3]) * scale < 2:
                break
        raise ScorerError(f"window: cannot fit {len(frames)} frames in max_visual_tokens={budget} even downscaled "
                          f"(still {needed} tokens: the processor's minimum per image is too large)")

    # ---- scoring --------------------------------------------------------------------------------
    def score_batch(self, tasks: Sequence[str], items: Sequence[np.ndarray]) -> list[ScoreResult]:
        from vlmrl.reward_workers.backends.base import VLMRequest

        check_items(self.name, tasks, items, self.params.window_size)
        w = self.params.window_size
        note = P.GRID_NOTE if self.params.layout == "grid" else ""
        images = [self.fit_images(np.asarray(it)) for it in items]
        if self.params.prompt == "single_stage":
            reqs = [VLMRequest(P.chat(P.user_turn(len(ims), P.WINDOW_SCORE_SINGLE.format(task=t, n=w, scale=SCALE, layout_note=note))),
                               ims, P.scale_answers(SCALE)) for t, ims in zip(tasks, images)]
            descriptions = [""] * len(items)
        else:
            first = [P.user_turn(len(ims), P.WINDOW_DESCRIBE.format(task=t, n=w, layout_note=note))
                     for t, ims in zip(tasks, images)]
            descriptions = self.backend.generate([VLMRequest(P.chat(u), ims) for u, ims in zip(first, images)],
                                                 self.params.max_new_tokens)
            reqs = [VLMRequest(P.chat(u, {"role": "assistant", "content": [{"type": "text", "text": d}]},
                                      {"role": "user", "content": [{"type": "text", "text": P.WINDOW_SCORE_AFTER_DESCRIPTION.format(scale=SCALE)}]}),
                               ims, P.scale_answers(SCALE)) for u, d, ims in zip(first, descriptions, images)]
        out = []
        for lp in self.backend.score_candidates(reqs):
            progress = expected_scale(lp)
            out.append(ScoreResult(reward=progress, components={"progress": progress}))
        self.last_descriptions = descriptions
        return out

    def close(self) -> None:
        self.backend.close()
