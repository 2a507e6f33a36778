"""The tiny local VLM (Qwen2.5-VL, Qwen3-VL) / CLIP builders: checkpoints reload with the stock ``from_pretrained`` classes,
builds are deterministic, and the processor's token ids for a fixed prompt + image stay pinned.

Plumbing tests: the tiny models have random weights, nothing here checks reward quality.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_qwen_token_ids.json"
FIXTURE_PROMPT = "The task is: pick up the red cube\nIs the task complete in this image? Answer yes or no."


def fixture_image() -> np.ndarray:
    """A fixed 48x64 RGB gradient (no RNG, so every machine builds the same pixels)."""
    y, x = np.mgrid[0:48, 0:64]
    return np.stack([x * 4, y * 5, (x + y) * 2], axis=-1).astype(np.uint8)


def fixture_encoding(processor) -> dict:
    from vlmrl.reward_workers.models import prompts as P

    text = processor.apply_chat_template(P.chat(P.user_turn(1, FIXTURE_PROMPT)), add_generation_prompt=True,
                                         tokenize=False)
    enc = processor(text=[text], images=[[fixture_image()]], return_tensors="pt")
    return {"prompt": FIXTURE_PROMPT, "input_ids": enc["input_ids"][0].tolist(),
            "image_grid_thw": enc["image_grid_thw"].tolist(), "pixel_values_shape": list(enc["pixel_values"].shape)}


def test_tiny_vlm_reloads_with_stock_auto_classes(tiny_vlm_dir):
    from transformers import AutoModelForImageTextToText, AutoProcessor, Qwen2_5_VLProcessor, Qwen2VLImageProcessor

    model = AutoModelForImageTextToText.from_pretrained(tiny_vlm_dir)
    proc = AutoProcessor.from_pretrained(tiny_vlm_dir)
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert isinstance(proc, Qwen2_5_VLProcessor) and isinstance(proc.image_processor, Qwen2VLImageProcessor)
    tc = model.config.text_config
    assert (tc.hidden_size, tc.num_hidden_layers, tc.head_dim, model.config.vision_config.depth) == (128, 2, 64, 2)
    assert sum(tc.rope_parameters["mrope_section"]) == tc.head_dim // 2
    tok = proc.tokenizer
    for special in ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|endoftext|>"):
        ids = tok.encode(special, add_special_tokens=False)
        assert len(ids) == 1, special
    assert model.config.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert tok.encode("10", add_special_tokens=False) == tok.encode("1", add_special_tokens=False) + tok.encode("0", add_special_tokens=False)
    enc = fixture_encoding(proc)
    assert enc["input_ids"].count(model.config.image_token_id) == int(np.prod(enc["image_grid_thw"][0])) // 4
    with torch.no_grad():
        out = model(**proc(text=[proc.apply_chat_template([{"role": "user", "content": [{"type": "image"},
                    {"type": "text", "text": "hi"}]}], add_generation_prompt=True, tokenize=False)],
                    images=[[fixture_image()]], return_tensors="pt"))
    assert out.logits.shape[-1] == model.config.text_config.vocab_size and torch.isfinite(out.logits).all()


def test_token_ids_match_pinned_fixture(tiny_vlm_dir):
    """The ids the stock processor makes for a fixed prompt + image; GPU machines must reproduce them."""
    from transformers import AutoProcessor

    got = fixture_encoding(AutoProcessor.from_pretrained(tiny_vlm_dir))
    assert FIXTURE.exists(), f"missing {FIXTURE}; write it with: python {__file__} (see _write_fixture)"
    assert got == json.loads(FIXTURE.read_text())


def test_builds_are_deterministic(tiny_vlm_dir, tmp_path):
    from vlmrl.reward_workers.backends.tiny_models import build_tiny_qwen_vl

    again = build_tiny_qwen_vl(tmp_path / "again")
    for name in ("model.safetensors", "tokenizer.json", "config.json", "chat_template.jinja"):
        assert (again / name).read_bytes() == (Path(tiny_vlm_dir) / name).read_bytes(), name


def test_tiny_qwen3_vl_reloads_with_stock_classes_and_cli_builds_it(tiny_qwen3_vl_dir, tmp_path, capsys):
    from transformers import AutoModelForImageTextToText, AutoProcessor, Qwen2VLImageProcessor, Qwen3VLProcessor

    from vlmrl.system.cli import main

    model = AutoModelForImageTextToText.from_pretrained(tiny_qwen3_vl_dir)
    proc = AutoProcessor.from_pretrained(tiny_qwen3_vl_dir)
    assert type(model).__name__ == "Qwen3VLForConditionalGeneration" and model.config.model_type == "qwen3_vl"
    assert isinstance(proc, Qwen3VLProcessor) and isinstance(proc.image_processor, Qwen2VLImageProcessor)
    assert proc.image_processor.patch_size == 16 and model.config.vision_config.deepstack_visual_indexes == [1]
    tc = model.config.text_config
    assert sum(tc.rope_parameters["mrope_section"]) == tc.head_dim // 2
    enc = fixture_encoding(proc)
    assert enc["input_ids"].count(model.config.image_token_id) == int(np.prod(enc["image_grid_thw"][0])) // 4
    text = proc.apply_chat_template([{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                                    add_generation_prompt=True, tokenize=False)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"  # no default system turn
    with torch.no_grad():
        out = model(**proc(text=[text], return_tensors="pt"))
    assert out.logits.shape[-1] == tc.vocab_size and torch.isfinite(out.logits).all()
    assert main(["build-tiny-vlm", str(tmp_path / "q3"), "--arch", "qwen3_vl"]) == 0
    assert "Qwen3-VL" in capsys.readouterr().out
    for name in ("model.safetensors", "tokenizer.json", "config.json"):  # deterministic
        assert (tmp_path / "q3" / name).read_bytes() == (Path(tiny_qwen3_vl_dir) / name).read_bytes(), name


def test_tiny_clip_reloads_and_cli_builds_it(tiny_clip_dir, tmp_path, capsys):
    from transformers import AutoModel, AutoProcessor, CLIPImageProcessor

    from vlmrl.system.cli import main

    assert main(["build-tiny-vlm", str(tmp_path / "c"), "--clip"]) == 0
    assert "CLIP" in capsys.readouterr().out
    assert (tmp_path / "c" / "model.safetensors").read_bytes() == (Path(tiny_clip_dir) / "model.safetensors").read_bytes()
    model = AutoModel.from_pretrained(tiny_clip_dir)
    proc = AutoProcessor.from_pretrained(tiny_clip_dir)
    assert type(model).__name__ == "CLIPModel" and isinstance(proc.image_processor, CLIPImageProcessor)
    enc = proc(text=["a robot arm"], images=[fixture_image()], return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(**enc)
    assert out.logits_per_image.shape == (1, 1)


def _write_fixture(out: Path = FIXTURE) -> None:
    import tempfile

    from transformers import AutoProcessor

    from vlmrl.reward_workers.backends.tiny_models import build_tiny_qwen_vl

    with tempfile.TemporaryDirectory() as d:
        enc = fixture_encoding(AutoProcessor.from_pretrained(build_tiny_qwen_vl(d)))
    out.write_text(json.dumps(enc) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    _write_fixture()
