"""CLI smoke test: `vlmrl lrm-train` then `vlmrl eval-reward` on a tiny synthetic dataset, in a subprocess."""

import json
import os
import subprocess
import sys



def vlmrl(*args, timeout=180):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "vlmrl.system.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_lrm_train_then_eval_reward(synthetic_dataset, tmp_path):
    model, ev = tmp_path / "model", tmp_path / "eval"
    r = vlmrl("lrm-train", f"lrm_train.dataset_dirs=[{synthetic_dataset}]", f"lrm_train.out_dir={model}",
              "lrm_train.epochs=2", "lrm_train.image_size=32", "lrm_train.widths=[8,16]", "lrm_train.embed_dim=16",
              "lrm_train.text_encoder=hashed", "lrm_train.val_fraction=0.25", "lrm_train.batch_size=32")
    assert r.returncode == 0, r.stderr
    assert "epoch 2/2" in r.stdout and "val progress_acc@0.2=" in r.stdout
    assert (model / "model.safetensors").exists() and (model / "config.yaml").exists()
    assert any((model / "tb").iterdir())
    scorers = f"[{{name: compact_lrm, params: {{weights_dir: {model}}}}}, {{name: synthetic}}]"
    r = vlmrl("eval-reward", f"eval_reward.dataset_dirs=[{synthetic_dataset}]", f"eval_reward.out_dir={ev}",
              "eval_reward.val_fraction=0.25", f"eval_reward.scorers={scorers}")
    assert r.returncode == 0, r.stderr
    assert "progress acc @±0.2" in r.stdout and "compact_lrm" in r.stdout and "n/a" in r.stdout
    metrics = json.loads((ev / "metrics.json").read_text())
    assert set(metrics) == {"compact_lrm", "synthetic"}
    assert 0.0 <= metrics["compact_lrm"]["progress_acc"]["0.2"] <= 1.0
    assert (ev / "progress_accuracy.png").read_bytes()[:4] == b"\x89PNG"


def test_clear_errors(tmp_path):
    r = vlmrl("lrm-train", f"lrm_train.out_dir={tmp_path}")
    assert r.returncode == 2 and "dataset_dirs" in r.stderr
    r = vlmrl("lrm-train", f"lrm_train.dataset_dirs=[{tmp_path}]")
    assert r.returncode == 2 and "index.jsonl" in r.stderr
    r = vlmrl("eval-reward", f"eval_reward.dataset_dirs=[{tmp_path}]")
    assert r.returncode == 2 and "no scorers" in r.stderr
    r = vlmrl("lrm-train", f"lrm_train.out_dir={tmp_path}", "lrm_train.restarts=0")
    assert r.returncode == 2 and "restarts=0" in r.stderr
    r = vlmrl("lrm-train", f"lrm_train.out_dir={tmp_path}", "lrm_train.restarts=2", "lrm_train.model=vlm")
    assert r.returncode == 2 and "only with model=compact" in r.stderr
    r = vlmrl("lrm-train", f"lrm_train.out_dir={tmp_path}", "lrm_train.parallel_restarts=0")
    assert r.returncode == 2 and "parallel_restarts=0" in r.stderr
