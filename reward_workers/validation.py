"""Checks a ScoreRequest against the worker's scorer and limits, and decodes its items.

Everything a caller can get wrong raises :class:`~vlmrl.reward_workers.frames.InvalidInput`
with a message naming the request and the item; the server answers INVALID_ARGUMENT with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vlmrl.reward_workers.frames import InvalidInput, decode_item, frame_nbytes, item_frames
from vlmrl.reward_workers.proto import reward_pb2
from vlmrl.reward_workers.scorers.base import Scorer


@dataclass(frozen=True)
class RequestLimits:
    """The server limits a request must fit (from ``ServerConfig``)."""

    max_items_per_request: int
    max_frame_pixels: int
    max_request_decoded_bytes: int

    @classmethod
    def from_config(cls, server_cfg: Any) -> "RequestLimits":
        return cls(int(server_cfg.max_items_per_request), int(server_cfg.max_frame_pixels),
                   int(server_cfg.max_request_decoded_bytes))


def request_decoded_bytes(request: reward_pb2.ScoreRequest) -> int:
    """Bytes the request's frames decode to, from their declared shapes (decoding checks each image against them)."""
    return sum(frame_nbytes(f) for item in request.items for f in item_frames(item))


def check_request_header(request: reward_pb2.ScoreRequest, scorer: Scorer, limits: RequestLimits) -> int:
    """The cheap checks: id, task, scorer name, item count and decoded size (no frame decoding).

    Returns the bytes the request decodes to."""
    if not request.request_id:
        raise InvalidInput("request_id is missing (callers must set a unique id per request)")
    if not request.task.strip():
        raise InvalidInput(f"request {request.request_id!r}: task is missing or blank")
    if request.scorer and request.scorer != scorer.name:
        raise InvalidInput(f"request {request.request_id!r}: asks for scorer {request.scorer!r}, "
                           f"but this worker runs {scorer.name!r}")
    n = len(request.items)
    if n == 0:
        raise InvalidInput(f"request {request.request_id!r}: items is empty (send at least one item)")
    if n > limits.max_items_per_request:
        raise InvalidInput(f"request {request.request_id!r}: {n} items exceed max_items_per_request = "
                           f"{limits.max_items_per_request}; split the request")
    nbytes = request_decoded_bytes(request)
    if nbytes > limits.max_request_decoded_bytes:
        raise InvalidInput(f"request {request.request_id!r}: its frames decode to {nbytes} bytes, over "
                           f"max_request_decoded_bytes = {limits.max_request_decoded_bytes}; split the request")
    return nbytes


def decode_request_items(request: reward_pb2.ScoreRequest, scorer: Scorer, limits: RequestLimits) -> list[np.ndarray]:
    """Every item as ``(k, H, W, C)`` uint8, checked against the scorer's kind and frame count."""
    items = []
    for i, pb_item in enumerate(request.items):
        try:
            items.append(decode_item(pb_item, scorer.item_kind, scorer.frames_per_item, limits.max_frame_pixels))
        except InvalidInput as e:
            raise InvalidInput(f"request {request.request_id!r}: items[{i}]: {e}") from None
    return items
