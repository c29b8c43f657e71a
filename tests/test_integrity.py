"""Never a silently wrong result: keyed stages, keyed caches, damage detected or recovered."""

import errno
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_pretrain_block, tiny_steal_config
from stolen_jax import checkpoint, defaults, eaas, jobs, optim, stages, steal, train_lib
from stolen_jax.data import sources
from stolen_jax.errors import (CheckpointError, ConfigError, DataError, TrainingDiverged,
                               UserError)


def fake_target(images):
  return np.repeat(images.reshape(len(images), -1, 3).mean(1), 2, axis=1).astype(np.float32)


def _images(n=40):
  return np.random.default_rng(0).integers(0, 255, (n, 4, 4, 3), dtype=np.uint8)


# 1. Stale stages --------------------------------------------------------------------------

def test_stage_keys_follow_settings(tmp_path):
  a = stages.open_stage(str(tmp_path), "steal", {"lambda_": 20.0, "distance": "l2"})
  b = stages.open_stage(str(tmp_path), "steal", {"distance": "l2", "lambda_": 20})
  c = stages.open_stage(str(tmp_path), "steal", {"lambda_": 0.0, "distance": "l2"})
  assert a.dir == b.dir != c.dir
  assert json.load(open(os.path.join(c.dir, "stage.json")))["settings"]["lambda_"] == 0.0
  with pytest.raises(ConfigError, match="lambda_: 20.0 -> 1.0"):
    stages.open_stage(str(tmp_path), "steal", {"lambda_": 1.0, "distance": "l2"}, strict=True)


def test_steal_with_new_settings_in_a_finished_workdir_trains_afresh(tiny_target, tmp_path):
  s1 = steal.run(tiny_steal_config(tiny_target), str(tmp_path))
  s2 = steal.run(tiny_steal_config(tiny_target, lambda_=0.0, distance="cosine"), str(tmp_path))
  assert s2["stage_dir"] != s1["stage_dir"]
  assert s2["lambda"] == 0.0 and s2["distance"] == "cosine" and not s2.get("restored")
  assert s2["final_step"] == 4 and s2["resumed_from_step"] == 0  # Trained, not resumed.
  assert s2["queries_this_run"] == 0  # The paid answers (same target, images) are reused.
  assert s2["final_loss"] != s1["final_loss"]
  # The first stage's record is untouched, and asking for it again restores it.
  assert json.load(open(os.path.join(s1["stage_dir"], "summary.json")))["lambda"] == 20.0
  s3 = steal.run(tiny_steal_config(tiny_target), str(tmp_path))
  assert s3["restored"] and s3["stage_dir"] == s1["stage_dir"]


# 2. A query cache is tied to its target -------------------------------------------------

def test_cache_of_another_target_or_defense_is_refused(tmp_path):
  x = _images()
  key = {"images": eaas.cache.fingerprint(x), "target": "aaaa", "defense": "none"}
  eaas.query_with_cache(eaas.QueryService(fake_target), x,
                        eaas.FeatureCache(str(tmp_path), "d", len(x), key))
  with pytest.raises(DataError, match="other target"):
    eaas.FeatureCache(str(tmp_path), "d", len(x), {**key, "target": "bbbb"})
  with pytest.raises(DataError, match="other defense"):
    eaas.FeatureCache(str(tmp_path), "d", len(x), {**key, "defense": "topk"})


def test_steal_against_another_target_pays_for_its_answers(tiny_target, tiny_moco_target, tmp_path):
  s1 = steal.run(tiny_steal_config(tiny_target, epochs=1), str(tmp_path))
  s2 = steal.run(tiny_steal_config(tiny_moco_target[0], epochs=1), str(tmp_path))
  assert s1["target_fingerprint"] != s2["target_fingerprint"]
  assert s2["query_stage"] != s1["query_stage"] and s2["queries_this_run"] == 32


# 3. A damaged cache -----------------------------------------------------------------------

def test_truncated_or_overwritten_cache_requeries_only_damaged_rows(tmp_path):
  x = _images()
  key = eaas.cache.fingerprint(x)
  eaas.query_with_cache(eaas.QueryService(fake_target), x,
                        eaas.FeatureCache(str(tmp_path), "d", len(x), key), 8)
  path = tmp_path / "d.features.npy"
  size = os.path.getsize(path)
  header = size - 40 * 6 * 4
  with open(path, "r+b") as f:
    f.truncate(header + 30 * 6 * 4 + 5)  # Rows 30.. lost (row 30 cut mid-way).
    f.seek(header + 3 * 6 * 4)
    f.write(b"\x00" * 8)  # Row 3 overwritten.
  cache = eaas.FeatureCache(str(tmp_path), "d", len(x), key)
  assert sorted(cache.damaged_rows.tolist()) == [3] + list(range(30, 40))
  service = eaas.QueryService(fake_target)
  f = eaas.query_with_cache(service, x, cache, 8)
  assert service.queries_used == 11  # Exactly the damaged rows, paid again.
  np.testing.assert_allclose(f, fake_target(x), rtol=1e-6)


# 4. Divergence ----------------------------------------------------------------------------

def test_nan_parameters_stop_the_run_before_any_checkpoint(mesh1, tmp_path):
  params = {"w": jnp.ones((3,))}
  tx = optim.optax.sgd(0.1)
  state = train_lib.TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats={},
                               opt_state=tx.init(params), rng=jax.random.PRNGKey(0))

  def poisoned_step(state, batch):  # A finite loss while the weights go NaN.
    return state.replace(step=state.step + 1,
                         params={"w": state.params["w"] * jnp.nan}), {"loss": jnp.float32(1.0)}

  from stolen_jax import metrics
  data = {"x": jnp.zeros((8, 1))}
  with pytest.raises(TrainingDiverged, match="NaN/inf"):
    train_lib.fit(state, poisoned_step, data, num_examples=8, batch_size=4, epochs=2, seed=0,
                  mesh=mesh1, checkpoint_dir=str(tmp_path / "ckpt"), meta={},
                  writer=metrics.Writer(str(tmp_path), enabled=False), checkpoint_every_epochs=1)
  assert not [d for d in os.listdir(tmp_path / "ckpt") if d.isdigit()]


def test_a_steal_no_better_than_random_is_flagged():
  from stolen_jax import report
  assert steal.heldout_failure({"stolen_cosine": 0.30, "random_cosine": 0.31})
  assert steal.heldout_failure({"stolen_cosine": float("nan"), "random_cosine": 0.3})
  assert steal.heldout_failure({"stolen_cosine": 0.9, "random_cosine": 0.3}) is None
  row = {"dataset": "d", "ta": 0.5, "sa": 0.1, "queries": 1, "cosine": 0.1, "agreement": 0.2,
         "failed": True}
  md = report.markdown([row], {}, {}, {"failed": "held-out cosine ..."})
  assert "steal FAILED" in md


# 5. Float images ---------------------------------------------------------------------------

def test_float_images_are_scaled_not_zeroed_and_bad_ranges_refused(tmp_path):
  x = np.random.default_rng(0).uniform(0, 1, (6, 8, 8, 3)).astype(np.float32)
  np.savez(tmp_path / "f.npz", x_train=x, y_train=np.arange(6))
  got = sources.load(f"npz:{tmp_path}/f.npz", "train", image_size=8).images
  np.testing.assert_array_equal(got, np.round(x * 255).astype(np.uint8))
  np.savez(tmp_path / "g.npz", x_train=x * 300, y_train=np.arange(6))
  with pytest.raises(DataError, match="range over"):
    sources.load(f"npz:{tmp_path}/g.npz", "train", image_size=8)
  np.savez(tmp_path / "h.npz", x_train=np.zeros((2, 3, 8, 8, 3), np.uint8))
  with pytest.raises(DataError, match="not \\(N, H, W\\)"):
    sources.load(f"npz:{tmp_path}/h.npz", "train", image_size=8)


# 6. Counts checked before any stage or query -------------------------------------------------

@pytest.mark.parametrize("block,key,value,message", [
    ("steal", "epochs", -1, "steal.epochs=-1"),
    ("steal", "batch_size", 0, "steal.batch_size=0"),
    ("steal", "lr", float("inf"), "steal.lr=inf"),
    ("pretrain", "epochs", 0, "pretrain.epochs=0"),
    ("probe", "batch_size", 0, "probe.batch_size=0"),
    ("defense", "name", "magic", "unknown defense.name 'magic'"),
])
def test_bad_counts_fail_before_any_stage(tmp_path, block, key, value, message):
  from test_probe import tiny_probe_block
  config = tiny_steal_config(None)
  config.job = "pipeline"
  config.probe = tiny_probe_block()
  config[block][key] = value
  with pytest.raises(ConfigError, match=message.replace("(", "\\(")):
    jobs.run(config, str(tmp_path))
  assert not os.listdir(tmp_path) if os.path.exists(tmp_path) else True


# 7. Preflight --------------------------------------------------------------------------------

def test_preflight_lists_every_missing_dataset_in_seconds(tmp_path):
  from test_probe import tiny_probe_block
  config = tiny_steal_config(None)
  config.job = "pipeline"
  config.pretrain.dataset, config.pretrain.data_dir = "tfds:cifar10", str(tmp_path / "tfds")
  config.steal.surrogate = f"npz:{tmp_path}/nope.npz"
  config.probe = tiny_probe_block(datasets="embedded:glyphs,folder:/no/such/folder")
  with pytest.raises(DataError) as e:
    jobs.run(config, str(tmp_path / "w"))
  text = str(e.value)
  assert "cifar10" in text and "nope.npz" in text and "/no/such/folder" in text
  # Every missing dataset's line says how to make it, with a command that works here.
  assert "--config.prepare.format=cifar10" in text
  assert f"--config.prepare.output={tmp_path}/nope.npz" in text
  assert not (tmp_path / "w").exists()


# Damage: a clear error or a recovery ---------------------------------------------------------

def test_damaged_summary_is_recomputed_not_a_traceback(tmp_path):
  stage = stages.open_stage(str(tmp_path), "steal", {"a": 1})
  stage.write_summary({"complete": True})
  assert stage.completed()
  with open(os.path.join(stage.dir, "summary.json"), "w") as f:
    f.write('{"complete": tr')
  assert stage.completed() is None


def test_half_written_query_log_line_is_skipped(tmp_path):
  log = tmp_path / "q.jsonl"
  service = eaas.QueryService(fake_target, log_path=str(log))
  service.query(_images(5))
  with open(log, "a") as f:
    f.write('{"count": 7, "tot')  # Killed mid-write.
  again = eaas.QueryService(fake_target, log_path=str(log))
  assert again.queries_used == 5
  again.query(_images(3))
  assert eaas.QueryService(fake_target, log_path=str(log)).queries_used == 8


def test_bad_latest_checkpoint_falls_back_to_the_previous(tmp_path):
  from stolen_jax import pretrain
  pretrain.train(tiny_pretrain_block(epochs=2, checkpoint_every_epochs=1), str(tmp_path), 0)
  steps = sorted(int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit())
  assert len(steps) == 2
  for root, _, files in os.walk(tmp_path / "checkpoints" / str(steps[-1]) / "state"):
    for name in files:
      with open(os.path.join(root, name), "wb") as f:
        f.write(b"garbage")
  _, meta = checkpoint.read(str(tmp_path))
  assert meta["arch"] == "resnet10"
  state, _ = checkpoint.read(str(tmp_path))
  assert int(state["step"]) == steps[0]
  # A resumed run falls back too: it continues from the good checkpoint.
  summary = pretrain.train(tiny_pretrain_block(epochs=3, checkpoint_every_epochs=1), str(tmp_path), 0)
  assert summary["resumed_from_step"] == steps[0] and summary["final_step"] == 3 * steps[0]


def test_corrupt_npz_and_unreadable_image_name_the_file(tmp_path):
  (tmp_path / "bad.npz").write_bytes(b"not a zip file")
  with pytest.raises(DataError, match="bad.npz"):
    sources.load(f"npz:{tmp_path}/bad.npz", "train")
  folder = tmp_path / "imgs" / "cat"
  folder.mkdir(parents=True)
  from PIL import Image
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "ok.png")
  (folder / "broken.png").write_bytes(b"\x89PNG garbage")
  with pytest.raises(DataError, match="broken.png"):
    sources.load(f"folder:{tmp_path}/imgs", "train", image_size=8)


def test_workdir_under_a_file_is_one_error(tmp_path):
  (tmp_path / "file").write_text("x")
  config = defaults.base_config("pretrain")
  config.pretrain = tiny_pretrain_block()
  with pytest.raises(UserError, match="cannot"):
    jobs.run(config, str(tmp_path / "file" / "w"))


def test_disk_full_during_save_is_a_clear_error(tmp_path, monkeypatch):
  mngr = checkpoint.manager(str(tmp_path / "c"))

  def full(*a, **k):
    os.makedirs(tmp_path / "c" / "1.orbax-checkpoint-tmp-123", exist_ok=True)
    raise OSError(errno.ENOSPC, "No space left on device")
  monkeypatch.setattr(mngr, "save", full)
  with pytest.raises(CheckpointError, match="disk full"):
    checkpoint.save(mngr, 1, {"x": np.zeros(2)}, {})
  assert not (tmp_path / "c" / "1.orbax-checkpoint-tmp-123").exists()


def test_changed_arch_in_an_existing_workdir_is_a_new_stage(tmp_path):
  config = defaults.base_config("pretrain")
  config.pretrain = tiny_pretrain_block(epochs=1)
  first = jobs.run(config, str(tmp_path))
  config.pretrain.arch = "resnet18"
  second = jobs.run(config, str(tmp_path))
  assert second["arch"] == "resnet18" and first["arch"] == "resnet10"
  assert len(stages.find_stage_dirs(str(tmp_path / "pretrain"))) == 2
  with pytest.raises(CheckpointError, match="2 stages"):
    checkpoint.read(str(tmp_path / "pretrain"))
