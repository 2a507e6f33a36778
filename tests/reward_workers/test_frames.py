"""Frame/item encoding and every way a frame on the wire can be malformed."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from vlmrl.reward_workers.frames import InvalidInput, decode_frame, decode_item, encode_frame, make_item
from vlmrl.reward_workers.proto import reward_pb2
from vlmrl.reward_workers.scorers.base import ItemKind

RNG = np.random.default_rng(0)


def img(h=6, w=5, c=3):
    return RNG.integers(0, 256, (h, w, c), dtype=np.uint8)


@pytest.mark.parametrize("c", [1, 3, 4])
@pytest.mark.parametrize("encoding", ["raw", "png"])
def test_lossless_round_trip(c, encoding):
    a = img(c=c)
    pb = encode_frame(a, encoding)
    assert list(pb.shape) == [6, 5, c]
    np.testing.assert_array_equal(decode_frame(pb), a)


def test_jpeg_round_trip_is_close():
    a = np.tile(np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None], (32, 1, 3))
    out = decode_frame(encode_frame(a, "jpeg"))
    assert out.shape == a.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - a).mean() < 4


def test_encode_rejects_bad_input():
    with pytest.raises(InvalidInput, match="uint8"):
        encode_frame(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(InvalidInput, match="alpha"):
        encode_frame(img(c=4), "jpeg")
    with pytest.raises(InvalidInput, match="unknown encoding"):
        encode_frame(img(), "webp")


def raw(shape, nbytes=None, dtype=""):
    n = int(np.prod(shape)) if nbytes is None else nbytes
    return reward_pb2.Frame(shape=shape, data=bytes(max(n, 0)), encoding=reward_pb2.RAW, dtype=dtype)


@pytest.mark.parametrize("pb, message", [
    (raw([4, 4]), "3 dims"),
    (raw([4, 4, 3, 1]), "3 dims"),
    (raw([4, 4, 2]), "channels"),
    (raw([0, 4, 3], 0), "positive"),
    (raw([4, -1, 3], 0), "positive"),
    (raw([4, 4, 3], dtype="float32"), "dtype must be uint8"),
    (raw([4, 4, 3], nbytes=47), "needs 48 bytes, got 47"),
    (raw([4, 4, 3], nbytes=49), "needs 48 bytes, got 49"),
])
def test_decode_rejects_malformed_raw(pb, message):
    with pytest.raises(InvalidInput, match=message):
        decode_frame(pb)


def test_decode_rejects_too_many_pixels():
    with pytest.raises(InvalidInput, match="max_frame_pixels = 100"):
        decode_frame(raw([20, 20, 3]), max_pixels=100)
    assert decode_frame(raw([10, 10, 3]), max_pixels=100).shape == (10, 10, 3)


def test_decode_rejects_corrupt_and_mismatched_images():
    png = encode_frame(img(), "png")
    corrupt = reward_pb2.Frame(shape=png.shape, data=png.data[:20], encoding=reward_pb2.PNG)
    with pytest.raises(InvalidInput, match="cannot decode PNG"):
        decode_frame(corrupt)
    garbage = reward_pb2.Frame(shape=[6, 5, 3], data=b"not an image at all", encoding=reward_pb2.JPEG)
    with pytest.raises(InvalidInput, match="cannot decode JPEG"):
        decode_frame(garbage)
    wrong_size = reward_pb2.Frame(shape=[7, 5, 3], data=png.data, encoding=reward_pb2.PNG)
    with pytest.raises(InvalidInput, match="decoded PNG is 6x5, but shape says 7x5"):
        decode_frame(wrong_size)
    wrong_channels = reward_pb2.Frame(shape=[6, 5, 1], data=png.data, encoding=reward_pb2.PNG)
    with pytest.raises(InvalidInput, match=r"PNG frame of mode RGB has colour pixels, but the frame shape says C=1"):
        decode_frame(wrong_channels)
    png_as_jpeg = reward_pb2.Frame(shape=[6, 5, 3], data=png.data, encoding=reward_pb2.JPEG)
    with pytest.raises(InvalidInput, match="says JPEG but its data is PNG"):
        decode_frame(png_as_jpeg)


def test_palette_png_decodes_to_rgb():
    a = np.zeros((4, 4, 3), np.uint8)
    a[:2] = (255, 0, 0)
    buf = io.BytesIO()
    Image.fromarray(a).convert("P").save(buf, format="PNG")
    out = decode_frame(reward_pb2.Frame(shape=[4, 4, 3], data=buf.getvalue(), encoding=reward_pb2.PNG))
    np.testing.assert_array_equal(out, a)


def test_items_round_trip_each_kind():
    a, b = img(), img()
    np.testing.assert_array_equal(decode_item(make_item(a, ItemKind.FRAME), "frame"), a[None])
    np.testing.assert_array_equal(decode_item(make_item(np.stack([a, b]), "pair"), "pair", 2), np.stack([a, b]))
    w = np.stack([img() for _ in range(4)])
    np.testing.assert_array_equal(decode_item(make_item(w, "window", encoding="png"), "window", 4), w)


def test_decode_item_rejects_wrong_kind_count_and_mixed_shapes():
    pair = make_item(np.stack([img(), img()]), "pair")
    with pytest.raises(InvalidInput, match="item is a pair, but this scorer takes frame items"):
        decode_item(pair, "frame", 1)
    with pytest.raises(InvalidInput, match="item is empty"):
        decode_item(reward_pb2.Item(), "frame")
    window = make_item(np.stack([img() for _ in range(3)]), "window")
    with pytest.raises(InvalidInput, match="window item has 3 frames, this scorer needs exactly 8"):
        decode_item(window, "window", 8)
    half_pair = reward_pb2.Item(pair=reward_pb2.FramePair(first=encode_frame(img())))
    with pytest.raises(InvalidInput, match="both `first` and `second`"):
        decode_item(half_pair, "pair", 2)
    mixed = reward_pb2.Item(window=reward_pb2.FrameWindow(frames=[encode_frame(img()), encode_frame(img(h=7))]))
    with pytest.raises(InvalidInput, match="must share a shape"):
        decode_item(mixed, "window")
    bad_second = reward_pb2.Item(pair=reward_pb2.FramePair(first=encode_frame(img()), second=raw([4, 4, 3], 3)))
    with pytest.raises(InvalidInput, match="frame 1: RAW frame"):
        decode_item(bad_second, "pair", 2)
    with pytest.raises(InvalidInput, match="exactly 2 frames"):
        make_item(img(), "pair")


# --------------------------------------------------------------------------- every legal PNG/JPEG mode (issue 26)


def png_frame(image: Image.Image, shape, **save) -> reward_pb2.Frame:
    buf = io.BytesIO()
    image.save(buf, format="PNG", **save)
    return reward_pb2.Frame(shape=shape, data=buf.getvalue(), encoding=reward_pb2.PNG)


def hand_png(width: int, height: int, bit_depth: int, colour_type: int, pixel: bytes) -> bytes:
    """A PNG of one repeated pixel, written by hand (Pillow cannot write 16-bit colour PNGs)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + pixel * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_16_bit_grey_png_is_scaled_not_truncated():
    pb = png_frame(Image.fromarray(np.full((8, 8), 40000, np.uint16)), [8, 8, 1])
    out = decode_frame(pb)
    assert out.dtype == np.uint8 and out.shape == (8, 8, 1)
    assert (out == 156).all()  # round(40000 * 255 / 65535) = 156; mean / 255 = 0.6118 vs the exact 0.6104
    assert abs(out.mean() / 255 - 40000 / 65535) <= 0.5 / 255
    with pytest.raises(InvalidInput, match="16-bit grey PNG with a transparent colour key"):
        decode_frame(png_frame(Image.fromarray(np.full((8, 8), 40000, np.uint16)), [8, 8, 4], transparency=40000))
    extremes = png_frame(Image.fromarray(np.array([[0, 65535], [257, 32896]], np.uint16)), [2, 2, 3])
    np.testing.assert_array_equal(decode_frame(extremes)[:, :, 0], [[0, 255], [1, 128]])


def test_1_bit_png_white_is_255():
    out = decode_frame(png_frame(Image.new("1", (8, 8), 1), [8, 8, 1]))
    assert (out == 255).all()
    checker = Image.fromarray(np.indices((4, 4)).sum(0) % 2 == 0)
    np.testing.assert_array_equal(decode_frame(png_frame(checker, [4, 4, 3]))[:, :, 1],
                                  np.where(np.indices((4, 4)).sum(0) % 2 == 0, 255, 0))


def test_palette_png_white_index_is_white_for_grey_and_rgb():
    p = Image.new("P", (8, 8), 0)
    p.putpalette([255, 255, 255] + [0, 0, 0] * 255)
    assert (decode_frame(png_frame(p, [8, 8, 1])) == 255).all()
    assert (decode_frame(png_frame(p, [8, 8, 3])) == 255).all()
    rgba = decode_frame(png_frame(p, [8, 8, 4], transparency=0))  # tRNS: index 0 fully transparent
    assert (rgba[:, :, :3] == 255).all() and (rgba[:, :, 3] == 0).all()
    with pytest.raises(InvalidInput, match="mode P has transparent pixels, but the frame shape says C=3"):
        decode_frame(png_frame(p, [8, 8, 3], transparency=0))


def test_grey_alpha_png_converts_exactly_or_is_refused():
    la = Image.fromarray(np.dstack([np.full((4, 4), 100, np.uint8), np.full((4, 4), 50, np.uint8)]), "LA")
    out = decode_frame(png_frame(la, [4, 4, 4]))
    assert (out[:, :, :3] == 100).all() and (out[:, :, 3] == 50).all()
    with pytest.raises(InvalidInput, match="mode LA has transparent pixels, but the frame shape says C=1"):
        decode_frame(png_frame(la, [4, 4, 1]))
    opaque = Image.fromarray(np.dstack([np.full((4, 4), 100, np.uint8), np.full((4, 4), 255, np.uint8)]), "LA")
    assert (decode_frame(png_frame(opaque, [4, 4, 1])) == 100).all()  # opaque alpha drops without loss


def test_grey_png_as_rgb_and_rgb_as_rgba_are_exact():
    g = img(c=1)
    np.testing.assert_array_equal(decode_frame(png_frame(Image.fromarray(g[:, :, 0]), [6, 5, 3])),
                                  np.repeat(g, 3, axis=2))
    a = img(c=3)
    out = decode_frame(png_frame(Image.fromarray(a), [6, 5, 4]))
    np.testing.assert_array_equal(out[:, :, :3], a)
    assert (out[:, :, 3] == 255).all()


@pytest.mark.parametrize("colour_type, pixel, name", [(2, b"\x9c\x40" * 3, "RGB"), (6, b"\x9c\x40" * 4, "RGBA"),
                                                      (4, b"\x9c\x40" * 2, "grey\\+alpha")])
def test_16_bit_colour_png_is_refused_naming_the_mode(colour_type, pixel, name):
    channels = {2: 3, 6: 4, 4: 4}[colour_type]
    pb = reward_pb2.Frame(shape=[4, 4, channels], data=hand_png(4, 4, 16, colour_type, pixel), encoding=reward_pb2.PNG)
    with pytest.raises(InvalidInput, match=f"16-bit {name} PNG is not accepted"):
        decode_frame(pb)


def test_cmyk_jpeg_is_refused_naming_the_mode():
    buf = io.BytesIO()
    Image.new("CMYK", (8, 8), (0, 0, 0, 0)).save(buf, format="JPEG")
    pb = reward_pb2.Frame(shape=[8, 8, 3], data=buf.getvalue(), encoding=reward_pb2.JPEG)
    with pytest.raises(InvalidInput, match="JPEG mode CMYK is not accepted"):
        decode_frame(pb)


def test_png_size_is_checked_from_the_header_before_decoding(monkeypatch):
    pb = png_frame(Image.new("RGB", (1024, 1024)), [8, 8, 3])

    def no_decoding(*a, **k):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", no_decoding)
    with pytest.raises(InvalidInput, match="decoded PNG is 1024x1024, but shape says 8x8"):
        decode_frame(pb)
