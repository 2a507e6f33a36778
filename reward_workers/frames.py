"""Frames on the wire: numpy uint8 images <-> ``reward_pb2.Frame`` / ``reward_pb2.Item``.

Clients build requests with :func:`encode_frame` / :func:`make_item`; the server turns each
item back into a ``(k, H, W, C)`` uint8 array with :func:`decode_item`, which checks
everything a caller can get wrong and raises :class:`InvalidInput` with a message saying
exactly what (the server answers INVALID_ARGUMENT with that message).
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np

from vlmrl.reward_workers.proto import reward_pb2
from vlmrl.reward_workers.scorers.base import ItemKind

VALID_CHANNELS = (1, 3, 4)
_ENCODINGS = {"raw": reward_pb2.RAW, "png": reward_pb2.PNG, "jpeg": reward_pb2.JPEG, "jpg": reward_pb2.JPEG}
_ENCODING_NAMES = {reward_pb2.RAW: "RAW", reward_pb2.PNG: "PNG", reward_pb2.JPEG: "JPEG"}
_ONEOF_OF_KIND = {ItemKind.FRAME: "frame", ItemKind.PAIR: "pair", ItemKind.WINDOW: "window"}


class InvalidInput(ValueError):
    """A frame or item on the wire is malformed; the message says exactly what is wrong."""


# --------------------------------------------------------------------------- encoding (client side)


def encode_frame(arr: np.ndarray, encoding: str = "raw", jpeg_quality: int = 90) -> reward_pb2.Frame:
    """One ``(H, W, C)`` uint8 image (C in 1, 3, 4) as a Frame: raw bytes, PNG or JPEG (RGB/grey only)."""
    arr = np.asarray(arr)
    if arr.dtype != np.uint8:
        raise InvalidInput(f"frame dtype must be uint8, got {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    _check_shape(list(arr.shape), max_pixels=None)
    enc = _ENCODINGS.get(encoding.lower())
    if enc is None:
        raise InvalidInput(f"unknown encoding {encoding!r}; use one of raw, png, jpeg")
    shape = list(arr.shape)
    if enc == reward_pb2.RAW:
        data = np.ascontiguousarray(arr).tobytes()
    else:
        from PIL import Image

        h, w, c = arr.shape
        if enc == reward_pb2.JPEG and c == 4:
            raise InvalidInput("JPEG cannot carry an alpha channel (C=4); use png or raw")
        img = Image.fromarray(arr[:, :, 0] if c == 1 else arr, mode={1: "L", 3: "RGB", 4: "RGBA"}[c])
        buf = io.BytesIO()
        if enc == reward_pb2.PNG:
            img.save(buf, format="PNG", compress_level=1)
        else:
            img.save(buf, format="JPEG", quality=jpeg_quality)
        data = buf.getvalue()
    return reward_pb2.Frame(shape=shape, data=data, encoding=enc, dtype="uint8")


def make_item(frames: np.ndarray | Sequence[np.ndarray], kind: ItemKind | str,
              encoding: str = "raw") -> reward_pb2.Item:
    """An Item of the given kind from ``(k, H, W, C)`` frames (or one ``(H, W, C)`` frame for ``frame``)."""
    kind = ItemKind(kind)
    if isinstance(frames, np.ndarray) and frames.ndim == 3:
        frames = frames[None]
    frames = list(frames)
    if kind == ItemKind.FRAME:
        if len(frames) != 1:
            raise InvalidInput(f"a frame item holds exactly 1 frame, got {len(frames)}")
        return reward_pb2.Item(frame=encode_frame(frames[0], encoding))
    if kind == ItemKind.PAIR:
        if len(frames) != 2:
            raise InvalidInput(f"a pair item holds exactly 2 frames, got {len(frames)}")
        return reward_pb2.Item(pair=reward_pb2.FramePair(first=encode_frame(frames[0], encoding),
                                                         second=encode_frame(frames[1], encoding)))
    if not frames:
        raise InvalidInput("a window item needs at least 1 frame")
    return reward_pb2.Item(window=reward_pb2.FrameWindow(frames=[encode_frame(f, encoding) for f in frames]))


# --------------------------------------------------------------------------- decoding (server side)


def _check_shape(shape: list[int], max_pixels: int | None) -> None:
    if len(shape) != 3:
        raise InvalidInput(f"frame shape must be [H, W, C] (3 dims), got {shape}")
    h, w, c = shape
    if h <= 0 or w <= 0 or c <= 0:
        raise InvalidInput(f"frame dims must be positive, got shape {shape}")
    if c not in VALID_CHANNELS:
        raise InvalidInput(f"frame channels C must be one of {VALID_CHANNELS}, got shape {shape}")
    if max_pixels is not None and h * w > max_pixels:
        raise InvalidInput(f"frame H*W = {h * w} exceeds max_frame_pixels = {max_pixels} (shape {shape})")


def frame_nbytes(pb: reward_pb2.Frame) -> int:
    """Bytes the frame decodes to according to its declared shape (0 for a malformed shape; checked later)."""
    shape = list(pb.shape)
    if len(shape) != 3 or min(shape) <= 0:
        return 0
    return shape[0] * shape[1] * shape[2]


# PNG colour types (IHDR byte 25) that Pillow can only hand over as 8 bits by dropping the low byte of 16-bit samples.
_PNG_COLOUR_16 = {2: "RGB", 4: "grey+alpha", 6: "RGBA"}
# 16-bit grey comes out of Pillow with every bit ("I;16" etc.); it is scaled to 8 bits by rounding v * 255 / 65535.
_MODES_16 = ("I;16", "I;16B", "I;16L", "I")


def _natural_pixels(img, name: str, data: bytes) -> np.ndarray:
    """The decoded image as ``(H, W, C')`` uint8 with C' in 1 (grey), 2 (grey+alpha), 3 (RGB), 4 (RGBA),
    converted exactly from the file's mode, or :class:`InvalidInput` naming a mode that has no exact 8-bit form."""
    mode = img.mode
    if name == "PNG" and len(data) > 25 and data[24] == 16 and data[25] in _PNG_COLOUR_16:
        raise InvalidInput(f"16-bit {_PNG_COLOUR_16[data[25]]} PNG is not accepted (it has no exact 8-bit form "
                           f"here); send 8-bit PNG or RAW frames")
    if mode in _MODES_16:
        if not (name == "PNG" and len(data) > 25 and data[24] == 16 and data[25] == 0):
            raise InvalidInput(f"{name} mode {mode} is not accepted; send 8-bit grey, RGB or RGBA")
        if "transparency" in img.info:
            raise InvalidInput("16-bit grey PNG with a transparent colour key (tRNS) is not accepted; send 8-bit "
                               "grey+alpha or RGBA")
        wide = np.asarray(img).astype(np.uint32)
        return ((wide * 255 + 32767) // 65535).astype(np.uint8)[:, :, None]
    if mode == "1":  # 1-bit: 0 -> 0, 1 -> 255
        img = img.convert("L")
    elif mode in ("P", "PA") or (mode in ("L", "RGB") and "transparency" in img.info):
        # a palette stands for its colours; a tRNS colour key becomes alpha
        img = img.convert("RGBA" if mode == "PA" or "transparency" in img.info else "RGB")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        raise InvalidInput(f"{name} mode {mode} is not accepted (no exact 8-bit grey/RGB/RGBA form); "
                           f"send grey, RGB or RGBA")
    arr = np.asarray(img, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def _fit_channels(arr: np.ndarray, c: int, what: str) -> np.ndarray:
    """``arr`` (C' in 1..4) as C channels when that loses nothing: grey -> RGB repeats it, opaque alpha is dropped
    or added, an RGB image whose pixels are all grey becomes grey; anything else is InvalidInput."""
    have = arr.shape[2]
    if have == c:
        return arr
    colour, alpha = (arr[:, :, :-1], arr[:, :, -1:]) if have in (2, 4) else (arr, None)
    if alpha is not None and c != 4:
        if not (alpha == 255).all():
            raise InvalidInput(f"{what} has transparent pixels, but the frame shape says C={c} (no alpha); "
                               f"send C=4")
        alpha = None
    if colour.shape[2] == 1 and c != 1:
        colour = np.repeat(colour, 3, axis=2)
    elif colour.shape[2] == 3 and c == 1:
        if not ((colour[:, :, 0] == colour[:, :, 1]).all() and (colour[:, :, 0] == colour[:, :, 2]).all()):
            raise InvalidInput(f"{what} has colour pixels, but the frame shape says C=1 (grey); send C=3")
        colour = colour[:, :, :1]
    if c == 4 and alpha is None:
        alpha = np.full(colour.shape[:2] + (1,), 255, np.uint8)
    return np.ascontiguousarray(np.concatenate([colour, alpha], axis=2) if alpha is not None else colour)


def decode_frame(pb: reward_pb2.Frame, max_pixels: int | None = None) -> np.ndarray:
    """A Frame back to an ``(H, W, C)`` uint8 array, checking shape, dtype, byte count and decoded size.

    PNG/JPEG: the image size is read from the file header and checked against the declared shape
    before any pixel is decoded. Every 8-bit mode (1-bit, grey, grey+alpha, palette with or without
    transparency, RGB, RGBA) and 16-bit grey are converted exactly (16-bit grey v -> round(v * 255 / 65535));
    modes without an exact 8-bit form (16-bit colour, CMYK, 32-bit) are refused naming the mode.
    """
    shape = list(pb.shape)
    if pb.dtype not in ("", "uint8"):
        raise InvalidInput(f"frame dtype must be uint8, got {pb.dtype!r}")
    _check_shape(shape, max_pixels)
    h, w, c = shape
    if pb.encoding == reward_pb2.RAW:
        expected = h * w * c
        if len(pb.data) != expected:
            raise InvalidInput(f"RAW frame of shape {shape} needs {expected} bytes, got {len(pb.data)}")
        return np.frombuffer(pb.data, dtype=np.uint8).reshape(h, w, c)
    if pb.encoding not in (reward_pb2.PNG, reward_pb2.JPEG):
        raise InvalidInput(f"unknown frame encoding {pb.encoding}")
    name = _ENCODING_NAMES[pb.encoding]
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(pb.data))  # reads the header only
        if img.format != name:
            raise InvalidInput(f"frame says {name} but its data is {img.format or 'not an image'}")
        if (img.height, img.width) != (h, w):
            raise InvalidInput(f"decoded {name} is {img.height}x{img.width}, but shape says {h}x{w}")
        arr = _natural_pixels(img, name, pb.data)
    except InvalidInput:
        raise
    except Exception as e:  # PIL raises many types for corrupt data
        raise InvalidInput(f"cannot decode {name} frame data ({len(pb.data)} bytes): {e}") from e
    if arr.shape[:2] != (h, w):
        raise InvalidInput(f"decoded {name} has shape {list(arr.shape)}, but the frame says {shape}")
    return _fit_channels(arr, c, f"{name} frame of mode {img.mode}")


def item_kind_of(pb_item: reward_pb2.Item) -> str | None:
    """``frame``, ``pair``, ``window``, or None if the item is empty."""
    return pb_item.WhichOneof("kind")


def item_frames(pb_item: reward_pb2.Item) -> list[reward_pb2.Frame]:
    """The Frame messages of an item, in order."""
    kind = pb_item.WhichOneof("kind")
    if kind == "frame":
        return [pb_item.frame]
    if kind == "pair":
        return [pb_item.pair.first, pb_item.pair.second]
    if kind == "window":
        return list(pb_item.window.frames)
    return []


def is_compressed(pb_item: reward_pb2.Item) -> bool:
    """True if any frame of the item is PNG/JPEG (decoding it is worth a thread)."""
    return any(f.encoding != reward_pb2.RAW for f in item_frames(pb_item))


def decode_item(pb_item: reward_pb2.Item, expected_kind: ItemKind | str,
                frames_per_item: int | None = None, max_pixels: int | None = None) -> np.ndarray:
    """An Item back to ``(k, H, W, C)`` uint8; checks kind, frame count and every frame.

    ``frames_per_item`` is the exact k the scorer needs (None: any k >= 1). All frames of one
    item must share one shape.
    """
    expected_kind = ItemKind(expected_kind)
    kind = pb_item.WhichOneof("kind")
    if kind is None:
        raise InvalidInput(f"item is empty; this scorer takes {expected_kind.value} items")
    if kind != _ONEOF_OF_KIND[expected_kind]:
        raise InvalidInput(f"item is a {kind}, but this scorer takes {expected_kind.value} items")
    if kind == "pair" and not (pb_item.pair.HasField("first") and pb_item.pair.HasField("second")):
        raise InvalidInput("pair item needs both `first` and `second` frames")
    pbs = item_frames(pb_item)
    if not pbs:
        raise InvalidInput(f"{kind} item has no frames")
    if frames_per_item is not None and len(pbs) != frames_per_item:
        raise InvalidInput(f"{kind} item has {len(pbs)} frames, this scorer needs exactly {frames_per_item}")
    frames = []
    for j, f in enumerate(pbs):
        try:
            frames.append(decode_frame(f, max_pixels))
        except InvalidInput as e:
            raise InvalidInput(f"frame {j}: {e}" if len(pbs) > 1 else str(e)) from None
    if any(f.shape != frames[0].shape for f in frames[1:]):
        raise InvalidInput(f"frames of one {kind} item must share a shape, got {[list(f.shape) for f in frames]}")
    return np.stack(frames)
