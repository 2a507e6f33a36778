"""vlmrl build-offline-dataset: a mixed-quality dataset from several sources with per-source counts and a manifest."""

import json


from vlmrl.envs.dataset import iter_episodes, read_index
from vlmrl.envs.offline_readers import write_minari_hdf5
from vlmrl.envs.synthetic_episodes import make_synthetic_episode, write_synthetic_dataset
from vlmrl.system.cli import main


def test_mix_of_recorded_folders_and_hdf5_with_counts_and_manifest(tmp_path, capsys):
    a = write_synthetic_dataset(tmp_path / "task_a", num_episodes=9, seed=1, num_steps=6, image_size=16)
    b = write_synthetic_dataset(tmp_path / "task_b", num_episodes=6, seed=2, num_steps=6, image_size=16)
    h5 = write_minari_hdf5(tmp_path / "ext.hdf5", [make_synthetic_episode(seed=s, num_steps=5, image_size=16)
                                                   for s in range(3)], task_in="none")
    out = tmp_path / "mix"
    inputs = (f"[{{path: {a}, counts: {{demo: 2, random: 3}}}}, {{path: {b}, name: bee, max_episodes: 4}}, "
              f"{{path: {h5}, format: minari_hdf5, task_text: 'open the drawer', source: external, "
              f"hdf5: {{state_key: observations/state, image_key: observations/pixels}}}}, "
              f"{{format: synthetic, max_episodes: 3, seed: 7}}]")
    assert main(["build-offline-dataset", f"build_offline_dataset.output_dir={out}",
                 f"build_offline_dataset.inputs={inputs}"]) == 0
    assert "wrote 15 episodes" in capsys.readouterr().out
    index = read_index(out)
    m = json.loads((out / "manifest.json").read_text())
    assert m["episodes"] == len(index) == 2 + 3 + 4 + 3 + 3
    assert m["inputs"][0]["taken_by_source"] == {"demo": 2, "random": 3}
    assert m["inputs"][0]["requested"] == {"demo": 2, "random": 3}
    assert sum(m["inputs"][1]["taken_by_source"].values()) == 4 and m["inputs"][1]["name"] == "bee"
    assert m["inputs"][2]["taken_by_task"] == {"open the drawer": 3}
    assert m["inputs"][2]["taken_by_source"] == {"demo": 3}  # the HDF5 episodes' own `source` attribute
    assert set(m["by_source"]) == {"demo", "noisy_demo", "random"} and m["by_source"]["demo"] == 2 + 3 + 2 + 1
    assert sum(m["by_task"].values()) == m["episodes"] and len(m["by_task"]) >= 3
    assert len({e["id"] for e in index}) == len(index)  # ids unique across inputs
    assert all(e["meta"]["origin"]["input"] in ("task_a", "bee", "ext", "synthetic7") for e in index)
    eps = list(iter_episodes(out))
    assert any(e.succeeded for e in eps) and not all(e.succeeded for e in eps)
    # a second build into the same folder is refused; bad inputs say what is wrong
    assert main(["build-offline-dataset", f"build_offline_dataset.output_dir={out}",
                 f"build_offline_dataset.inputs=[{{path: {a}}}]"]) == 2
    assert "already holds a dataset" in capsys.readouterr().err
    assert main(["build-offline-dataset", f"build_offline_dataset.output_dir={tmp_path / 'x'}",
                 f"build_offline_dataset.inputs=[{{path: {a}, format: rlds}}]"]) == 2
    assert "unknown format 'rlds'" in capsys.readouterr().err
    assert main(["build-offline-dataset", f"build_offline_dataset.output_dir={tmp_path / 'y'}",
                 f"build_offline_dataset.inputs=[{{path: {a}, counts: {{expert: 3}}}}]"]) == 2
    assert "no episode selected" in capsys.readouterr().err
