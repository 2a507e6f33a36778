"""The ``lrm`` scorer with one model per reward head and prompt templates as data, on tiny local models:
template files load and are checked, answer parsers read the released LRM answer formats, three heads on three
models (one generating + parsing) score end to end through a real gRPC reward server, heads on one model
share one copy with per-head adapters, and every bad input is a one-line error at worker start.

Plumbing tests: the tiny models have random weights, nothing here checks reward quality.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vlmrl.reward_workers.scorers import build_scorer
from vlmrl.reward_workers.scorers.base import ScorerError
from vlmrl.reward_workers.models.prompt_templates import TemplateError, load_template

torch.set_num_threads(1)
TASK = "pick up the red cube"

# A template whose completion head GENERATES a percentage (constrained to digits, after a forced prefix) and parses
# it; the other heads ask the default questions by candidate logits.
PERCENT_TEMPLATE = """
name: percent_test
version: t1
system: null
questions:
  progress:
    images: [current]
    text: "The task is: {task}\\nHow far along is the robot? Answer 0 to {scale}."
    answer: {mode: logits, candidates: scale, values: linear}
  completion:
    images: [current]
    text: "The task is: {task}\\nHow sure are you that the task is complete, in percent? <image>"
    answer: {mode: generate, max_new_tokens: 2, prefix: "Percent: ", allowed_chars: "0123456789",
             regex: "Percent: (\\\\d+)", number: [0, 100]}
  contrastive:
    images: [previous, current]
    text: "The task is: {task}\\nImage A: <image> Image B: <image> Which is further along? Answer A or B."
    answer: {mode: logits, candidates: ["A", "B"], values: [0.0, 1.0]}
"""


def frames(seed: int, k: int = 2, h: int = 64, w: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (k, h, w, 3), dtype=np.uint8)


def one_line_error(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg, msg
    return msg


@pytest.fixture(scope="module")
def percent_template(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("templates") / "percent.yaml"
    path.write_text(PERCENT_TEMPLATE)
    return str(path)


@pytest.fixture(scope="module")
def second_qwen3(tmp_path_factory) -> str:
    from vlmrl.reward_workers.backends.tiny_models import build_tiny_qwen3_vl

    return str(build_tiny_qwen3_vl(tmp_path_factory.mktemp("qwen3_seed1") / "m", seed=1))


def test_template_files_load_and_default_asks_the_trainers_questions():
    from vlmrl.reward_workers.models import prompts as P
    from vlmrl.reward_workers.models.prompt_templates import lrm_requests

    d = load_template("default")
    assert d.tag == "default.p1" and d.system == P.SYSTEM
    prog, comp, cont = lrm_requests(TASK, "prev", "cur", 10)
    assert prog.messages[1]["content"][-1]["text"] == P.LRM_PROGRESS.format(task=TASK, scale=10)
    assert prog.candidates == tuple(str(i) for i in range(11)) and prog.images == ["cur"]
    assert comp.candidates == ("yes", "no") and cont.candidates == ("A", "B") and cont.images == ["prev", "cur"]
    r = load_template("lrm_released")
    assert r.tag == "lrm_released.r1" and r.system is None and "2a2facc" in r.source
    req = r.request("contrastive", TASK, "prev", "cur")
    content = req.messages[0]["content"]  # no system turn; images at the text's <image> marks
    assert [c["type"] for c in content] == ["text", "image", "text", "image", "text"] and req.images == ["prev", "cur"]
    assert req.candidates == () and '"more_complete_image"' in content[-1]["text"]
    comp = r.request("completion", TASK, "prev", "cur").messages[0]["content"]
    assert comp[0]["text"].endswith("- Current observation:") and comp[2]["text"].startswith("Has the task")


@pytest.mark.parametrize("head, text, value", [
    ("progress", 'Looking at the gripper... { "completion_progress": 0.7 }', 0.7),
    ("progress", '{"completion_progress": "NA"}', 0.0),
    ("progress", '{ "completion_progress": 1.5 }', None),  # out of [0, 1]
    ("progress", "about seventy percent", None),
    ("completion", '{ "task_completed": "Yes" }', 1.0),
    ("completion", '{ "task_completed": "no" }', 0.0),
    ("contrastive", 'Image A shows the cube far away; {"more_complete_image": "ImageA"} ... '
                    '{ "more_complete_image": "ImageB" }', 1.0),  # the last answer counts
    ("contrastive", '"more_complete_image": "ImageA"', 0.0),       # malformed JSON: the field pattern still reads
    ("contrastive", '{ "more_complete_image": "ImageC" }', None),
])
def test_released_answer_parsers(head, text, value):
    parsed = load_template("lrm_released").questions[head].answer.parse(text)
    assert parsed == (pytest.approx(value) if value is not None else None)


def test_percent_parser_and_bad_template_files(percent_template, tmp_path):
    a = load_template(percent_template).questions["completion"].answer
    assert a.parse("42") == pytest.approx(0.42) and a.parse("") is None and a.prefix == "Percent: "
    bad = {
        r"got \[True, False\]": PERCENT_TEMPLATE.replace('candidates: ["A", "B"], values: [0.0, 1.0]',
                                                 'candidates: [yes, no], values: [1.0, 0.0]'),
        "unknown keys": PERCENT_TEMPLATE.replace("version: t1", "version: t1\ncolour: red"),
        "exactly the heads": PERCENT_TEMPLATE.replace("  contrastive:", "  contrast:"),
        "marks for 2 images": PERCENT_TEMPLATE.replace("Image B: <image> ", ""),
        "max_new_tokens": PERCENT_TEMPLATE.replace("max_new_tokens: 2", "max_new_tokens: 0"),
    }
    for i, (expect, text) in enumerate(bad.items()):
        path = tmp_path / f"bad{i}.yaml"
        path.write_text(text)
        with pytest.raises(TemplateError, match=expect) as e:
            load_template(str(path))
        one_line_error(e)
    with pytest.raises(TemplateError, match="no file .*built-in templates: .*'default', 'lrm_released'"):
        load_template("no_such_family")


def test_three_heads_three_models_end_to_end_through_grpc(tiny_qwen3_vl_dir, tiny_vlm_dir, second_qwen3,
                                                          percent_template, serve, stub_for, make_request):
    params = {"model": tiny_qwen3_vl_dir, "weights": {"progress": 0.5, "completion": 0.3, "contrastive": 0.2},
              "heads": {"completion": {"model": tiny_vlm_dir, "template": percent_template},
                        "contrastive": {"model": second_qwen3}}}
    scorer = build_scorer("lrm", params)
    assert len(scorer._backends) == 3
    assert [type(h.view.backend.model).__name__ for h in scorer.heads] == [
        "Qwen3VLForConditionalGeneration", "Qwen2_5_VLForConditionalGeneration", "Qwen3VLForConditionalGeneration"]
    assert scorer.model_version.endswith("-default.p1+percent_test.t1") and "completion=" in scorer.model_id
    pairs = [frames(0), frames(1, h=80), frames(2, h=48, w=96)]
    res = scorer.score_batch([TASK] * 3, pairs)
    single = [scorer.score_batch([TASK], [p])[0] for p in pairs]
    for r, s in zip(res, single):
        assert set(r.components) == {"progress", "completion", "contrastive", "unparsed"}
        assert r.components["unparsed"] == 0.0  # constrained digits always parse
        assert all(0.0 <= r.components[h] <= 1.0 for h in ("progress", "completion", "contrastive"))
        assert r.components["completion"] * 100 == pytest.approx(round(r.components["completion"] * 100))  # a percent
        c = r.components
        assert r.reward == pytest.approx(0.5 * c["progress"] + 0.3 * c["completion"] + 0.2 * c["contrastive"])
        np.testing.assert_allclose(list(r.components.values()), list(s.components.values()), atol=1e-4)
    # each head equals a one-model scorer of that head's model and template
    alone = build_scorer("lrm", {"model": second_qwen3}).score_batch([TASK] * 3, pairs)
    np.testing.assert_allclose([r.components["contrastive"] for r in res],
                               [r.components["contrastive"] for r in alone], atol=1e-5)
    st = serve(scorer, max_batch=8, max_wait_ms=2.0)
    resp = stub_for(st).Score(make_request("lrm-3", pairs, task=TASK, kind="pair"), timeout=120)
    assert resp.model_version == scorer.model_version and len(resp.rewards) == 3
    for got, exp in zip(resp.rewards, res):
        assert got.reward == pytest.approx(exp.reward, abs=1e-4)
        assert got.components["completion"] == pytest.approx(exp.components["completion"], abs=1e-6)


def test_heads_on_one_model_share_a_copy_with_their_own_adapters(tiny_qwen3_vl_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    adapters = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        net = get_peft_model(AutoModelForImageTextToText.from_pretrained(tiny_qwen3_vl_dir),
                             LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
        adapters.append(str(tmp_path / f"a{seed}"))
        net.save_pretrained(adapters[-1])
    shared = build_scorer("lrm", {"model": tiny_qwen3_vl_dir, "heads": {"progress": {"adapter": adapters[0]},
                                                                         "completion": {"adapter": adapters[1]},
                                                                         "contrastive": {"adapter": ""}}})
    assert len(shared._backends) == 1  # one copy of the base weights, two adapters on it
    pairs = [frames(3), frames(4)]
    got = shared.score_batch([TASK] * 2, pairs)
    for head, adapter in (("progress", adapters[0]), ("completion", adapters[1]), ("contrastive", None)):
        ref = build_scorer("lrm", {"model": tiny_qwen3_vl_dir, **({"adapter": adapter} if adapter else {})})
        np.testing.assert_allclose([r.components[head] for r in got],
                                   [r.components[head] for r in ref.score_batch([TASK] * 2, pairs)], atol=1e-5)
    plain = build_scorer("lrm", {"model": tiny_qwen3_vl_dir})
    assert shared.model_version != plain.model_version


def released_copy(tmp_path, **replace) -> str:
    """The lrm_released template file with shorter generations (the random model never stops on its own)."""
    from vlmrl.reward_workers.models.prompt_templates import template_path

    text = template_path("lrm_released").read_text()
    text = text.replace("max_new_tokens: 512", "max_new_tokens: 12").replace("max_new_tokens: 128", "max_new_tokens: 12")
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    (tmp_path / "released.yaml").write_text(text)
    return str(tmp_path / "released.yaml")


def test_released_template_generates_parses_and_counts_unparsed(tiny_qwen3_vl_dir, tmp_path):
    assert build_scorer("lrm", {"model": tiny_qwen3_vl_dir, "template": "lrm_released"}).model_version.endswith(
        "-lrm_released.r1")
    s = build_scorer("lrm", {"model": tiny_qwen3_vl_dir, "template": released_copy(tmp_path)})
    r = s.score_batch([TASK], [frames(5)])[0]
    # the random model writes no JSON answer: every head takes its declared fallback and is counted
    assert r.components == {"progress": 0.0, "completion": 0.0, "contrastive": 0.5, "unparsed": 3.0}


def test_unparsed_answer_without_fallback_fails_the_batch_loudly(tiny_qwen3_vl_dir, tmp_path):
    strict = released_copy(tmp_path, **{"on_unparsed: 0.0\n  completion:": "on_unparsed: null\n  completion:"})
    s = build_scorer("lrm", {"model": tiny_qwen3_vl_dir, "template": strict})
    with pytest.raises(ScorerError, match=r"head 'progress': answer .* does not parse \(template lrm_released.r1 has "
                                          r"no on_unparsed value\)"):
        s.score_batch([TASK], [frames(6)])


def test_bad_heads_are_one_line_errors_at_worker_start(tiny_qwen3_vl_dir, tiny_clip_dir, percent_template, tmp_path):
    cases = [
        ({"heads": {"completion": {"model": str(tmp_path / "missing")}}},
         r"head 'completion': model folder .* does not exist; fix: point scorer.params.heads.completion.model"),
        ({"heads": {"contrastive": {"model": tiny_clip_dir}}},
         r"head 'contrastive': .* is a 'clip' model, not an image-text-to-text VLM"),
        ({"heads": {"progress": {"template": "no_such_family"}}},
         r"head 'progress': template 'no_such_family': no file"),
        ({"memory_budget_gb": 0.001},
         r"head 'progress': model .* params x 4 B \+ 20% headroom = .* does not fit cpu: 0.00 GiB budget; fix: share"),
    ]
    adapter_dir = tmp_path / "adapter_only"
    adapter_dir.mkdir()
    (adapter_dir / "adapter_config.json").write_text('{"base_model_name_or_path": "Qwen/Qwen3-VL-8B-Instruct"}')
    cases.append(({"heads": {"progress": {"model": str(adapter_dir)}}},
                  r"is a LoRA adapter, not a model: give it as the adapter and its base model "
                  r"\(Qwen/Qwen3-VL-8B-Instruct\) as the model"))
    cases.append(({"heads": {"completion": {"adapter": str(tmp_path)}}}, r"is not a peft adapter folder"))
    single = Path(percent_template).read_text().replace('values: [0.0, 1.0]}', 'values: [0.0, 1.0], single_token: true}')
    single = single.replace('["A", "B"]', '["A", "no"]')  # "no" is two tokens of the tiny tokenizer
    (tmp_path / "single.yaml").write_text(single)
    cases.append(({"template": str(tmp_path / "single.yaml")},
                  r"head 'contrastive' \(template percent_test.t1\): logit scoring needs single-token answers but "
                  r"\['no'\] are not one token"))
    for extra, expect in cases:
        with pytest.raises(ScorerError, match=expect) as e:
            build_scorer("lrm", {"model": tiny_qwen3_vl_dir, **extra})
        one_line_error(e)
    # a budget that holds one tiny model but not two: the second model's head is named, after the first's
    from vlmrl.reward_workers.backends.memory import folder_numel
    from vlmrl.reward_workers.backends.tiny_models import build_tiny_qwen3_vl

    one_model_gb = folder_numel(tiny_qwen3_vl_dir) * 4 * 1.2 / 2 ** 30
    second = str(build_tiny_qwen3_vl(tmp_path / "second", seed=3))
    two = {"model": tiny_qwen3_vl_dir, "heads": {"contrastive": {"model": second}}, "memory_budget_gb": 1.5 * one_model_gb}
    with pytest.raises(ScorerError, match=r"head 'contrastive': .* after heads \['progress', 'completion'\] take") as e:
        build_scorer("lrm", two)
    one_line_error(e)


def test_released_config_builds_three_adapter_heads_on_one_base(tiny_qwen3_vl_dir, tmp_path):
    """configs/lrm_released.yaml with its four EDIT paths pointed at a tiny Qwen3-VL and three tiny adapters:
    the scorer of `vlmrl train` and the one of `vlmrl eval-reward` are the same three heads on one base copy."""
    from omegaconf import OmegaConf
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from vlmrl.system.config import load_config

    folders = {}
    for seed, head in enumerate(("progress", "completion", "contrastive")):
        torch.manual_seed(seed)
        net = get_peft_model(AutoModelForImageTextToText.from_pretrained(tiny_qwen3_vl_dir),
                             LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"], init_lora_weights=False))
        folders[head] = str(tmp_path / head)
        net.save_pretrained(folders[head])
    cfg = load_config("lrm_released", [f"scorer.params.model={tiny_qwen3_vl_dir}", "scorer.params.dtype=float32",
                                       "scorer.params.device=cpu"]
                      + [f"scorer.params.heads.{h}.adapter={p}" for h, p in folders.items()])
    params = OmegaConf.to_container(cfg.scorer.params, resolve=True)
    assert OmegaConf.to_container(cfg.eval_reward.scorers[0].params, resolve=True) == params
    s = build_scorer(cfg.scorer.name, params)
    assert len(s._backends) == 1 and len({h.view.model_version for h in s.heads}) == 3
    assert [h.template.tag for h in s.heads] == ["lrm_released.r1"] * 3
