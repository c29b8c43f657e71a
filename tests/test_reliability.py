"""Third pass on wrong answers: labels, reopened stages, lost cache records, paying twice,
HTTP counts across runs, sweeps sharing cells, relocatable workdirs, full disks."""

import json
import os
import shutil

import numpy as np
import pytest

from conftest import tiny_pretrain_block, tiny_steal_config
from stolen_jax import checkpoint, defaults, eaas, jobs, steal, sweep
from stolen_jax.data import sources
from stolen_jax.errors import CheckpointError, ConfigError, DataError


def fake_target(images):
  return (np.repeat(images.reshape(len(images), -1, 3).mean(1), 2, axis=1) / 255 + 0.5).astype(
      np.float32)


def _images(n=40, seed=0):
  return np.random.default_rng(seed).integers(0, 255, (n, 4, 4, 3), dtype=np.uint8)


# Labels ---------------------------------------------------------------------------------

def _npz(tmp_path, y_train, y_test=None, n=6):
  x = np.zeros((n, 4, 4, 3), np.uint8)
  path = tmp_path / "d.npz"
  np.savez(path, x_train=x, y_train=np.asarray(y_train), x_test=x,
           y_test=np.asarray(y_test if y_test is not None else np.arange(n) % 2))
  return f"npz:{path}"


@pytest.mark.parametrize("labels, message", [
    ([0, 1, 0, 1], "4 labels for 6 images"),
    ([0, 1, -1, 1, 0, 1], "negative"),
    ([0, 1, 0.5, 1, 0, 1], "not whole numbers"),
    ([0, 1, np.nan, 1, 0, 1], "not whole numbers"),
])
def test_bad_labels_are_one_clear_error(tmp_path, labels, message):
  with pytest.raises(DataError, match=message):
    sources.load(_npz(tmp_path, labels), "train", image_size=4)


def test_whole_float_labels_and_columns_are_accepted(tmp_path):
  loaded = sources.load(_npz(tmp_path, np.array([[0.0], [1.0], [2.0], [0.0], [1.0], [2.0]])),
                        "train", image_size=4)
  assert loaded.labels.dtype == np.int32 and loaded.labels.tolist() == [0, 1, 2, 0, 1, 2]


def test_test_classes_never_seen_in_training_are_refused(tmp_path):
  from stolen_jax import probe
  spec = _npz(tmp_path, [0, 1, 0, 1, 0, 1], [0, 1, 2, 2, 3, 1])
  cfg = defaults.probe_block()
  cfg.image_size, cfg.num_train, cfg.num_test = 4, None, None
  with pytest.raises(DataError, match=r"2 .*\[2\]|3 of 6 test images.*\[2, 3\]"):
    probe.load_downstream(spec, cfg, 0)


# Finished stages whose checkpoints are damaged ---------------------------------------------

def _damage(step_dir):
  for root, _, files in os.walk(step_dir / "state"):
    for name in files:
      (step_dir / "state" / os.path.relpath(os.path.join(root, name), step_dir / "state")
       ).write_bytes(b"garbage")


def test_finished_steal_with_damaged_final_checkpoint_is_trained_on_not_reported(tiny_target, tmp_path):
  config = tiny_steal_config(tiny_target)
  first = steal.run(config, str(tmp_path))
  ckpts = tmp_path / "steal" / first["stage_key"] / "checkpoints"
  steps = sorted(int(d) for d in os.listdir(ckpts) if d.isdigit())
  assert len(steps) == 2 and first["final_step"] == steps[-1]
  _damage(ckpts / str(steps[-1]))
  again = steal.run(config, str(tmp_path))
  assert not again.get("restored"), "a damaged final checkpoint must not count as finished"
  assert again["resumed_from_step"] == steps[0] and again["final_step"] == steps[-1]
  assert again["queries_this_run"] == 0  # The paid answers are reused.
  state, _ = checkpoint.read(again["stage_dir"])
  assert int(state["step"]) == steps[-1]
  # Every checkpoint damaged: trained afresh from step 0, still no query paid.
  for s in os.listdir(ckpts):
    if s.isdigit():
      _damage(ckpts / s)
  third = steal.run(config, str(tmp_path))
  assert third["resumed_from_step"] == 0 and third["final_step"] == steps[-1]
  assert third["queries"] == 32 and third["queries_this_run"] == 0


# The answer cache: lost records, a kill between paying and storing ----------------------------

def _query(tmp_path, n=40, keyed=True, log=True, batch=16):
  x = _images(n)
  service = eaas.QueryService(fake_target, log_path=str(tmp_path / "q.jsonl") if log else None)
  cache = eaas.FeatureCache(str(tmp_path), "s", n, eaas.cache.fingerprint(x), keyed_directory=keyed)
  return service, eaas.query_with_cache(service, x, cache, batch), x


@pytest.mark.parametrize("lost", ["s.rows.npy", "s.json", "both"])
def test_lost_cache_records_are_rebuilt_from_the_query_log(tmp_path, lost):
  service, first, x = _query(tmp_path)
  assert service.queries_used == 40
  for name in (["s.rows.npy", "s.json"] if lost == "both" else [lost]):
    os.remove(tmp_path / name)
  again, features, _ = _query(tmp_path)
  assert again.queries_used == 40, "intact paid answers were paid again"
  np.testing.assert_array_equal(features, first)


def test_lost_record_outside_a_keyed_directory_is_an_error_before_paying(tmp_path):
  _query(tmp_path, keyed=False)
  os.remove(tmp_path / "s.json")
  with pytest.raises(DataError, match="move .* aside"):
    _query(tmp_path, keyed=False)
  assert eaas.QueryService(fake_target, log_path=str(tmp_path / "q.jsonl")).queries_used == 40


def test_lost_rows_without_a_query_log_is_an_error_before_paying(tmp_path):
  _query(tmp_path, log=False)
  os.remove(tmp_path / "s.rows.npy")
  with pytest.raises(DataError, match="does not say which rows were paid"):
    _query(tmp_path, log=False)


def test_kill_between_paying_and_storing_does_not_pay_twice(tmp_path, monkeypatch):
  x = _images(40)
  calls = {"n": 0}
  real_store = eaas.FeatureCache.store

  def store_then_die(self, idx, answers):
    calls["n"] += 1
    if calls["n"] == 2:  # The second batch is logged as paid; the process dies before storing.
      raise KeyboardInterrupt
    return real_store(self, idx, answers)
  monkeypatch.setattr(eaas.FeatureCache, "store", store_then_die)
  service = eaas.QueryService(fake_target, log_path=str(tmp_path / "q.jsonl"))
  with pytest.raises(KeyboardInterrupt):
    eaas.query_with_cache(service, x, eaas.FeatureCache(str(tmp_path), "s", 40,
                                                        eaas.cache.fingerprint(x)), 16)
  assert service.queries_used == 32
  monkeypatch.setattr(eaas.FeatureCache, "store", real_store)
  again = eaas.QueryService(fake_target, log_path=str(tmp_path / "q.jsonl"))
  f = eaas.query_with_cache(again, x, eaas.FeatureCache(str(tmp_path), "s", 40,
                                                        eaas.cache.fingerprint(x)), 16)
  assert again.queries_used == 40, "the batch paid before the kill was paid again"
  np.testing.assert_allclose(f, fake_target(x), rtol=1e-6)
  assert not (tmp_path / "s.pending.npz").exists()


def test_damaged_query_log_says_how_to_go_on(tmp_path):
  log = tmp_path / "q.jsonl"
  log.write_text('{"count": 4, "total": 4}\nGARBAGE\n{"count": 4, "total": 8}\n')
  with pytest.raises(eaas.service.UserError, match="delete it"):
    eaas.QueryService(fake_target, log_path=str(log))


# HTTP steals resumed: every paid query counted --------------------------------------------------

def test_http_steal_resumed_after_a_failure_counts_every_paid_query(tmp_path):
  from test_serve import ThreadServer
  from fake_api_server import fake_features
  from stolen_jax.eaas import client as client_lib, ledger as ledger_lib, server
  ledger = ledger_lib.Ledger(str(tmp_path / "ledger.sqlite"))
  app = server.make_app(fake_features, ledger, image_size=4, feature_dim=6, batch_window_ms=0)
  key = ledger.add_key("attacker", budget=1000)
  x = _images(40)
  log = str(tmp_path / "api_queries.jsonl")
  with ThreadServer(app) as url:
    first = client_lib.HTTPService(url, key)
    first.attach_log(log)
    real_append = first.log.append
    calls = {"n": 0}

    def append_then_die(count, **fields):
      calls["n"] += 1
      if calls["n"] == 3:  # Billed by the server, killed before the log line.
        raise KeyboardInterrupt
      return real_append(count, **fields)
    first.log.append = append_then_die
    cache = lambda: eaas.FeatureCache(str(tmp_path), "s", 40, eaas.cache.fingerprint(x))
    with pytest.raises(KeyboardInterrupt):
      eaas.query_with_cache(first, x, cache(), 8)
    second = client_lib.HTTPService(url, key)
    second.attach_log(log)
    assert second.queries_used == 16
    f = eaas.query_with_cache(second, x, cache(), 8)
  np.testing.assert_allclose(f, fake_features(x), rtol=1e-6)
  assert second.queries_used == 40 == ledger.authenticate(key).used


# Sweeps sharing cells, relocatable workdirs ----------------------------------------------------

def test_a_sweep_reusing_another_sweeps_cells_writes_its_table(tmp_path, monkeypatch):
  from stolen_jax import pipeline

  def fake_pipeline(cfg, workdir, **kw):
    return {"rows": [{"dataset": "d", "ta": 0.5, "sa": 0.4 + cfg.steal.lambda_ / 1000,
                      "queries": 10, "cost": 0.01, "cosine": 0.9, "agreement": 0.8}],
            "stage_times": {"steal": "1s"}, "settings": {}, "context": {}}
  monkeypatch.setattr(pipeline, "run", fake_pipeline)
  config = defaults.base_config("sweep")
  config.pretrain = tiny_pretrain_block()
  config.steal = defaults.steal_block()
  config.probe = defaults.probe_block()
  config.sweep = sweep.sweep_block()
  config.sweep.stack_steals = "off"
  config.sweep.axes = "steal.lambda_=1,20"
  first = sweep.run(config, str(tmp_path))
  config.sweep.axes = "steal.distance=l2,l1"  # Its l2 cell is the first sweep's λ=20 cell.
  second = sweep.run(config, str(tmp_path))
  assert second["computed"] == 1 and [r["steal.distance"] for r in second["rows"]] == ["l2", "l1"]
  assert first["computed"] == 2


def test_a_copied_workdir_reads_its_own_stages(tiny_target, tmp_path):
  config = tiny_steal_config(tiny_target)
  original, copy = tmp_path / "a", tmp_path / "b"
  first = steal.run(config, str(original))
  stored = json.loads((original / "steal" / first["stage_key"] / "summary.json").read_text())
  assert not os.path.isabs(stored["stage_dir"]) and not os.path.isabs(stored["query_stage"])
  shutil.copytree(original, copy)
  shutil.rmtree(original)  # Moved: the original is gone.
  again = steal.run(config, str(copy))
  assert again["restored"] and again["stage_dir"].startswith(str(copy))
  assert again["query_stage"].startswith(str(copy))
  checkpoint.read(again["stage_dir"])


# Full disks, defenses that cannot apply -----------------------------------------------------------

def test_orbax_resource_exhausted_is_one_disk_full_error(tmp_path, monkeypatch):
  mngr = checkpoint.manager(str(tmp_path / "c"))

  def full(*a, **k):
    os.makedirs(tmp_path / "c" / "1.orbax-checkpoint-tmp-9", exist_ok=True)
    raise ValueError("RESOURCE_EXHAUSTED: Failed to write: No space left on device")
  monkeypatch.setattr(mngr, "save", full)
  with pytest.raises(CheckpointError, match="disk full"):
    checkpoint.save(mngr, 1, {"x": np.zeros(2)}, {})
  assert not (tmp_path / "c" / "1.orbax-checkpoint-tmp-9").exists()
  monkeypatch.setattr(mngr, "wait_until_finished", full)
  with pytest.raises(CheckpointError, match="disk full"):
    checkpoint.finish(mngr)


def test_topk_above_the_feature_dimension_fails_before_pretraining():
  config = defaults.base_config("pipeline")
  config.pretrain = tiny_pretrain_block()
  config.steal = defaults.steal_block()
  config.probe = defaults.probe_block()
  config.defense.name, config.defense.k = "topk", 100000
  with pytest.raises(ConfigError, match="exceeds the target's feature dimension"):
    jobs.validate(config)


def _paper_sweep_config(monkeypatch, datasets):
  """A two-cell λ sweep carrying the paper's figures, over a stand-in pipeline whose rows
  are the downstream sets ``datasets``."""
  from stolen_jax import pipeline

  def fake_pipeline(cfg, workdir, **kw):
    return {"rows": [{"dataset": ds, "ta": 0.5, "sa": 0.4, "queries": 10, "cost": 0.01,
                      "cosine": 0.9, "agreement": 0.8} for ds in datasets],
            "stage_times": {"steal": "1s"}, "settings": {}, "context": {}}
  monkeypatch.setattr(pipeline, "run", fake_pipeline)
  config = defaults.base_config("sweep")
  config.pretrain, config.steal = tiny_pretrain_block(), defaults.steal_block()
  config.probe, config.sweep = defaults.probe_block(), sweep.sweep_block()
  config.sweep.stack_steals = "off"
  config.sweep.axes, config.sweep.paper = "steal.lambda_=0,20", "0.0:80.67/44.47; 20.0:80.67/79.43"
  return config


def test_a_sweep_writes_its_own_section_of_a_results_doc(tmp_path, monkeypatch):
  config = _paper_sweep_config(monkeypatch, ("gtsrb", "mnist_npz"))
  doc = tmp_path / "doc.md"
  doc.write_text("# Results\n\nIntro kept.\n")
  config.sweep.doc, config.sweep.doc_section = str(doc), "Fig. 2: lambda"
  out = sweep.run(config, str(tmp_path / "w"))
  rows = {r["dataset"]: r for r in out["rows"] if r["steal.lambda_"] == 20.0}
  assert rows["gtsrb"]["paper_sa"] == 79.43 and "paper_sa" not in rows["mnist_npz"]
  assert "The paper's TA / SA" not in (tmp_path / "w" / "results.md").read_text()  # Beside gtsrb.
  config.sweep.doc_section = "Table VI"
  sweep.run(config, str(tmp_path / "w"))
  config.sweep.doc_section = "Fig. 2: lambda"
  sweep.run(config, str(tmp_path / "w"))  # Rewrites its own section, leaves the other.
  text = doc.read_text()
  assert text.startswith("# Results\n\nIntro kept.")
  assert text.count("## Fig. 2: lambda") == 1 and text.count("## Table VI") == 1
  assert text.index("## Fig. 2: lambda") < text.index("## Table VI")  # Replaced in place.


def test_a_sweep_without_the_papers_downstream_set_quotes_its_figures_in_a_line(
    tmp_path, monkeypatch):
  config = _paper_sweep_config(monkeypatch, ("mnist_npz",))
  sweep.run(config, str(tmp_path / "w"))
  md = (tmp_path / "w" / "results.md").read_text()
  assert "paper SA (%)" not in md
  assert ("The paper's TA / SA (%) per cell (on gtsrb, a downstream set not probed here, so not "
          "beside these rows): 0.0: 80.67 / 44.47; 20.0: 80.67 / 79.43.") in md


def test_a_results_doc_names_its_plot_in_ascii(tmp_path):
  from stolen_jax import docs
  workdir = tmp_path / "w"
  workdir.mkdir()
  (workdir / "results.png").write_bytes(b"png")
  path = docs.write_section(str(tmp_path / "doc.md"), "Poisoning, ‖δ‖₂ ≤ ε (Table XV a)",
                            "| a |\n\n![plot](results.png)\n", str(workdir))
  assert (tmp_path / "poisoning____________table_xv_a.png").exists()
  assert "](poisoning____________table_xv_a.png)" in open(path).read()
