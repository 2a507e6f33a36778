"""Builders of tiny, randomly initialised, fully local VLM / CLIP checkpoints for tests and demos.

The reward path loads every model with ``from_pretrained(path)``; these builders write real
checkpoints of the same classes (Qwen2.5-VL, Qwen3-VL, CLIP) that are small enough to run on a CPU in
milliseconds, so every VLM scorer and backend can be exercised end to end without a hub download.
The weights are random (outputs carry no meaning): the checkpoints test plumbing, not quality.

Everything is deterministic: the tokenizer is trained on a fixed built-in corpus and the weights
come from a fixed torch seed, so two builds give identical files.
"""

from __future__ import annotations

import os
from pathlib import Path

QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
"""The Qwen2.5-VL control tokens, in Qwen's order (ids 0..13 in the tiny vocabulary)."""

# Qwen2-VL's chat template (images/videos inside user content), trimmed of tool calling.
QWEN_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# A small fixed corpus: the words of the scorer prompts, robot-task vocabulary, digits.
_CORPUS = """
You are a helpful assistant. You are a reward model for robot manipulation.
The task is: pick up the red cube and place it on the green target. Push the cube to the goal.
Open the drawer. Close the door. Stack the blue block on the red block. Lift the peg and insert it.
Look at the image of the robot. How far along is the robot in completing the task?
Answer with a single number from 0 to 10 where 0 means not started and 10 means complete.
Is the task complete in this image? Answer yes or no. Yes. No. yes no
Here are two images of the robot, image 1 and image 2. Which image is closer to achieving the task?
Answer 1 if the first image, 2 if the second image, 0 if there is no difference.
Which image shows the robot further along in the task? Answer A or B. A B
Describe the visual change between the frames: which objects moved, what the gripper did,
whether the object is now closer to the goal. The gripper moved to the left, the cube is lifted.
Based on the description, score the progress of this segment from 0 to 10.
a photo of a robot arm, a robot gripper holding a cube, an empty table, the cube on the target.
0 1 2 3 4 5 6 7 8 9 10 zero one two three four five six seven eight nine ten
first second none frame frames window image images video progress completion contrastive
""".strip()


def train_tokenizer(vocab_size: int = 1000):
    """A byte-level BPE tokenizer trained on the built-in corpus, with the Qwen special tokens.

    Digits are pre-split (one token per digit), as in the real Qwen tokenizers, so ``"10"`` is two tokens.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\p{N}"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=QWEN_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS.splitlines() * 4, trainer=trainer)
    return tok


def _fast_tokenizer(model_max_length: int = 4096):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=train_tokenizer(),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        additional_special_tokens=QWEN_SPECIAL_TOKENS[1:],
        model_max_length=model_max_length,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )


def _tiny_start(out_dir):
    """(output folder, created; the tiny tokenizer; its Qwen special-token ids) of a tiny Qwen-VL build."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _fast_tokenizer()
    return out, tokenizer, {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}


def _tiny_text(vocab_size: int, ids: dict, head_dim: int, rope: dict) -> dict:
    """The text-model fields both tiny Qwen-VLs share (hidden 128, 2 layers, 2 heads of ``head_dim``, 1 KV head)."""
    return dict(vocab_size=vocab_size, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                num_attention_heads=2, num_key_value_heads=1, head_dim=head_dim, max_position_embeddings=4096,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, **rope},
                bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
                tie_word_embeddings=True)


def _tiny_vision(patch_size: int, **extra) -> dict:
    """The vision-tower fields both tiny Qwen-VLs share (depth 2, hidden 64, 2 heads, merge 2) plus ``extra``."""
    return dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=2, out_hidden_size=128,
                patch_size=patch_size, spatial_merge_size=2, temporal_patch_size=2, **extra)


def _vision_token_ids(ids: dict) -> dict:
    return dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])


def _save_tiny(out: Path, seed: int, model_cls, config, ids: dict, processor_cls, video_cls, pixels: dict,
               tokenizer, chat_template: str) -> Path:
    """Initialise ``model_cls(config)`` from ``seed``, save it with greedy, Qwen-terminated generation defaults,
    and save its processor (Qwen2-VL image processor with ``pixels``, ``video_cls``, tokenizer, chat template)."""
    import torch
    from transformers import Qwen2VLImageProcessor

    torch.manual_seed(seed)
    model = model_cls(config).eval()
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.do_sample = False
    model.save_pretrained(out)
    processor_cls(image_processor=Qwen2VLImageProcessor(**pixels), video_processor=video_cls(**pixels),
                  tokenizer=tokenizer, chat_template=chat_template).save_pretrained(out)
    return out


def build_tiny_qwen_vl(out_dir: str | os.PathLike, seed: int = 0) -> Path:
    """Write a tiny random Qwen2.5-VL (+ tokenizer, image processor, chat template) to ``out_dir``.

    Text: hidden 128, 2 layers, 2 heads of dim 64 (vLLM needs head dim >= 32), mrope sections summing
    to head_dim/2. Vision: depth 2, hidden 64, patch 14, merge 2. Images are capped at 28*28*64 pixels
    (at most 64 visual tokens per image). Loadable with ``AutoModelForImageTextToText`` / ``AutoProcessor``.
    """
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor, Qwen2VLVideoProcessor

    out, tokenizer, ids = _tiny_start(out_dir)
    head_dim = 64
    config = Qwen2_5_VLConfig(
        text_config=dict(max_window_layers=2, **_tiny_text(len(tokenizer), ids, head_dim, {"mrope_section": [8, 12, 12]})),
        vision_config=_tiny_vision(14, window_size=56, fullatt_block_indexes=[1]),
        **_vision_token_ids(ids),
        tie_word_embeddings=True,
    )
    assert sum(config.text_config.rope_parameters["mrope_section"]) == head_dim // 2
    return _save_tiny(out, seed, Qwen2_5_VLForConditionalGeneration, config, ids, Qwen2_5_VLProcessor,
                      Qwen2VLVideoProcessor, dict(min_pixels=56 * 56, max_pixels=28 * 28 * 64), tokenizer,
                      QWEN_VL_CHAT_TEMPLATE)


_QWEN2_DEFAULT_SYSTEM = ("{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful "
                         "assistant.<|im_end|>\n{% endif %}")
assert _QWEN2_DEFAULT_SYSTEM in QWEN_VL_CHAT_TEMPLATE
QWEN3_VL_CHAT_TEMPLATE = QWEN_VL_CHAT_TEMPLATE.replace(_QWEN2_DEFAULT_SYSTEM, "")
"""Qwen3-VL's chat format: Qwen2-VL's, but no default system turn is added when the messages bring none."""


def build_tiny_qwen3_vl(out_dir: str | os.PathLike, seed: int = 0) -> Path:
    """Write a tiny random Qwen3-VL (+ tokenizer, image/video processors, chat template) to ``out_dir``.

    The classes of the released LRM checkpoints (``Qwen3VLForConditionalGeneration``, ``Qwen3VLProcessor``,
    ``Qwen2VLImageProcessor`` with Qwen3-VL's 16-px patches) at toy sizes. Text: hidden 128, 2 layers, 2 heads
    of dim 64, interleaved mrope sections summing to head_dim/2; vision: depth 2, hidden 64, patch 16, merge 2,
    one deepstack layer. Images are capped at 32*32*64 pixels (at most 64 visual tokens per image).
    """
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor, Qwen3VLVideoProcessor

    out, tokenizer, ids = _tiny_start(out_dir)
    head_dim = 64
    config = Qwen3VLConfig(
        text_config=_tiny_text(len(tokenizer), ids, head_dim, {"mrope_section": [12, 10, 10],
                                                                "mrope_interleaved": True}),
        vision_config=_tiny_vision(16, num_position_embeddings=64, deepstack_visual_indexes=[1]),
        **_vision_token_ids(ids),
        tie_word_embeddings=True,
    )
    assert sum(config.text_config.rope_parameters["mrope_section"]) == head_dim // 2
    pixels = dict(size={"shortest_edge": 64 * 64, "longest_edge": 32 * 32 * 64}, patch_size=16, merge_size=2)
    return _save_tiny(out, seed, Qwen3VLForConditionalGeneration, config, ids, Qwen3VLProcessor,
                      Qwen3VLVideoProcessor, pixels, tokenizer, QWEN3_VL_CHAT_TEMPLATE)


TINY_VLM_BUILDERS = {"qwen2_5_vl": build_tiny_qwen_vl, "qwen3_vl": build_tiny_qwen3_vl}
"""``vlmrl build-tiny-vlm --arch`` choices: architecture name -> builder."""


def build_tiny_clip(out_dir: str | os.PathLike, seed: int = 0) -> Path:
    """Write a tiny random CLIP (text + vision towers, tokenizer, ``CLIPImageProcessor``) to ``out_dir``."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _fast_tokenizer(model_max_length=64)
    tokenizer.padding_side = "right"
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=2, max_position_embeddings=64, eos_token_id=eos, pad_token_id=pad, bos_token_id=pad,
        ),
        vision_config=dict(
            hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
            image_size=32, patch_size=8,
        ),
        projection_dim=32,
    )
    torch.manual_seed(seed)
    CLIPModel(config).eval().save_pretrained(out)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out)
    return out
