"""Ownership verification (``job=verify``): each method flags a copy and spares innocents, the
suspect is metered, a rerun pays nothing, and bad inputs get one clear error each."""

import json

import numpy as np
import pytest

import verify_encoders as ve
from stolen_jax import defaults, jobs
from stolen_jax.errors import ConfigError
from stolen_jax.verify import dataset_inference, job
from stolen_jax.verify.base import Context

ALPHA = 0.01


def _config(suspect, **overrides):
  config = defaults.base_config("verify")
  config.verify = defaults.verify_block()
  v = config.verify
  v.victim, v.suspect = "callable:verify_encoders:victim", f"callable:verify_encoders:{suspect}"
  v.private = "none"  # Callables record no training data: dataset inference does not apply.
  v.public, v.public_split = "embedded:shapes", "test"
  v.num_samples, v.watermark_samples, v.permutations = 400, 100, 1999
  v.image_size, v.alpha = 16, ALPHA
  for key, value in overrides.items():
    target = config.defense.watermark if key.startswith("watermark.") else v
    target[key.split(".")[-1]] = value
  return config


def _watermarked(config):
  config.defense.name = "answer_watermark"
  for key in ("seed", "strength", "low", "high"):
    config.defense.watermark[key] = ve.WATERMARK[key]
  return config


def _run(config, tmp_path):
  jobs.validate(config)
  return jobs.JOBS["verify"](config, str(tmp_path))


def test_fidelity_flags_the_copy_and_spares_five_innocents(tmp_path, capsys):
  stolen = _run(_config("stolen"), tmp_path)
  assert stolen["combined"]["stolen"] and stolen["methods"]["fidelity"]["p_value"] <= ALPHA
  assert capsys.readouterr().out.strip().splitlines()[-1].startswith("verdict: stolen — p = ")
  for k in range(1, 6):
    innocent = _run(_config(f"innocent{k}"), tmp_path)
    assert not innocent["combined"]["stolen"], innocent["methods"]
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("verdict: not shown")


def test_answer_watermark_flags_only_a_copy_of_watermarked_answers(tmp_path):
  # An exact test at α = 0.01 flags one innocent in a hundred: five innocents are judged at
  # α = 0.001 (the calibration itself is the next test).
  wm = dict(methods="answer_watermark", alpha=0.001, permutations=9999)
  marked = _run(_watermarked(_config("stolen_watermarked", **wm)), tmp_path)
  assert marked["combined"]["stolen"], marked["methods"]
  # The victim's own watermarked answers carry the key (checked before the suspect is judged).
  assert marked["methods"]["answer_watermark"]["extra"]["victim_p"] <= 0.001
  clean = _run(_watermarked(_config("stolen", **wm)), tmp_path)
  assert clean["methods"]["answer_watermark"]["p_value"] > ALPHA  # Stole clean answers.
  for k in range(1, 6):
    innocent = _run(_watermarked(_config(f"innocent{k}", **wm)), tmp_path)
    assert not innocent["combined"]["stolen"], innocent["methods"]


def test_answer_watermark_p_values_are_calibrated_on_innocents():
  """Over 40 innocent encoders × 2 keys, p ≤ 0.05 about 5% of the time (at most 10 of 80:
  a binomial tail below 1e-3)."""
  from stolen_jax.data import sources
  from stolen_jax.defenses import answer_watermark as mark
  from stolen_jax.verify import answer_watermark as method
  public = sources.load("embedded:shapes", "train", image_size=16, num_examples=200, seed=5).images
  rng = np.random.default_rng(0)
  ps = []
  for key in (5, 6):
    colour = mark.trigger(key, 3)
    trig, ctrl = mark.stamp(public, colour, 0.25), mark.stamp(public, -colour, 0.25)
    t = mark.target_direction(key, ve.DIM)
    for s in range(40):
      f = ve.innocent(100 + s)
      ps.append(method.test_answers(f(trig), f(ctrl), t, rng, 999)[1])
  assert sum(p <= 0.05 for p in ps) <= 10, sorted(ps)[:12]


def test_a_watermark_key_that_does_not_match_is_one_error(tmp_path):
  config = _watermarked(_config("stolen_watermarked", methods="answer_watermark"))
  # The provider served answers without the watermark this key describes: the victim's
  # defense under key 6 is not what the stolen copy learned from, and the check runs on the
  # victim's answers under the given key, so change what the key claims about the answers.
  config.defense.watermark.low, config.defense.watermark.high = 0.95, 0.99
  with pytest.raises(ConfigError, match="does not show in the victim's own watermarked answers"):
    _run(config, tmp_path)


def test_the_suspect_is_metered_and_a_rerun_pays_nothing(tmp_path, capsys):
  config = _watermarked(_config("stolen_watermarked", num_samples=300, watermark_samples=60))
  first = _run(config, tmp_path)
  # fidelity's 300 public images + 60 trigger and 60 control inputs, and 2 images to read the
  # dimension of a black box that declares none.
  assert first["suspect_queries"] == 300 + 2 * 60 + 2
  assert first["methods"]["answer_watermark"]["suspect_queries"] == 120
  again = _run(config, tmp_path)
  assert again["stage_dir"] == first["stage_dir"] and "restored" in capsys.readouterr().out
  config.verify.suspect_budget = 400
  config.verify.seed = 1  # A new stage: it must fit the budget before anything is asked.
  with pytest.raises(ConfigError, match="need 420 suspect queries .* the 2 that read its "
                     "dimension but verify.suspect_budget=400"):
    _run(config, tmp_path)


def test_bad_inputs_get_one_clear_error_each(tmp_path):
  with pytest.raises(ConfigError, match="16-px images and the suspect 32-px"):
    _run(_config("big_input"), tmp_path)
  with pytest.raises(ConfigError, match="needs the suspect's features in the victim's space"):
    _run(_config("wide", methods="fidelity"), tmp_path)
  with pytest.raises(ConfigError, match="fidelity needs at least 20 samples"):
    _run(_config("stolen", num_samples=10, methods="fidelity"), tmp_path)
  with pytest.raises(ConfigError, match="no verification method applies.*at least 20 samples"):
    _run(_config("stolen", num_samples=10), tmp_path)  # 'auto': each says why it cannot run.
  with pytest.raises(ConfigError, match="unknown verify method 'fidelty'"):
    _run(_config("stolen", methods="fidelty"), tmp_path)
  with pytest.raises(ConfigError, match="too few for α"):
    _run(_config("stolen", permutations=50), tmp_path)
  config = _config("stolen")
  config.verify.suspect = None
  with pytest.raises(ConfigError, match="verify.suspect is required"):
    _run(config, tmp_path)
  with pytest.raises(ConfigError, match="verify.suspect='callable:verify_encoders:nothing'"):
    _run(_config("nothing"), tmp_path)


def test_a_suspect_of_another_dimension_still_gets_dataset_inference(tmp_path):
  config = _config("wide", private="embedded:shapes", private_num_examples=600, num_samples=200,
                   public="auto")
  out = _run(config, tmp_path)
  assert out["methods"]["dataset_inference"]["p_value"] is not None
  assert "the suspect's own" in out["methods"]["dataset_inference"]["test"]
  assert out["methods"]["fidelity"]["p_value"] is None  # Needs a shared space: says so.
  assert "victim's space" in out["methods"]["fidelity"]["note"]
  assert not out["combined"]["stolen"]


def _memorizing_victim(private):
  """A victim whose private training images sit on tight clusters of its representation
  space (what an encoder that fits its training data does), unseen images do not."""
  centres = ve.network(private[:8], 0)

  def victim(images):
    f = ve.network(images, 0)
    seen = np.isin(ve._pooled(images).sum(1), ve._pooled(private).sum(1))
    nearest = centres[np.argmin(((f[:, None] - centres[None]) ** 2).sum(-1), axis=1)]
    return np.where(seen[:, None], 0.3 * f + 0.7 * nearest, f)
  return victim


@pytest.mark.parametrize("seed", range(5))
def test_dataset_inference_flags_a_copy_and_spares_innocents(seed):
  from stolen_jax.data import sources
  # The held-out images come from the same pool as the private ones (as the job draws them).
  pool = sources.load("embedded:shapes", "train", image_size=16, num_examples=900, seed=0).images
  private, public = pool[:600], pool[600:]
  victim = _memorizing_victim(private)
  cfg = _config("stolen").verify
  cfg.dataset_inference.components = 8
  sets = {"private_a": private[:300], "private_b": private[300:600], "public": public}
  rng = np.random.default_rng(seed)

  def outcome(suspect):
    answers = {k: suspect(v) for k, v in sets.items() if k != "private_a"}
    return dataset_inference.test(Context(victim, sets, answers, cfg, None, {}, rng, True))
  noisy_copy = lambda x: victim(x) + 0.05 * np.random.default_rng(seed).normal(size=(len(x), ve.DIM))
  assert outcome(noisy_copy).p_value <= ALPHA
  assert outcome(ve.innocent(seed + 1)).p_value > ALPHA


def test_holm_combines_methods():
  from stolen_jax.verify.base import Outcome
  outs = [Outcome("a", 1.0, 0.004), Outcome("b", 1.0, 0.2), Outcome("c", note="n/a")]
  c = job.combine(outs, 0.01)
  assert c["stolen"] and c["methods_rejecting"] == ["a"] and c["threshold"] == 0.005
  assert not job.combine([Outcome("a", 1.0, 0.006), Outcome("b", 1.0, 0.2)], 0.01)["stolen"]


def test_a_pipeline_verifies_its_stolen_encoder_and_innocents(tmp_path):
  """``verify.enabled`` in a pipeline whose target is watermarked (``watermark.enabled``):
  the stolen encoder and the attacker's own pre-trained encoder are verified against the
  watermarked target, the watermark stage is keyed, and a rerun restores everything."""
  from conftest import tiny_pretrain_block, tiny_steal_config
  from stolen_jax import pipeline
  from test_probe import tiny_probe_block
  config = tiny_steal_config(None, epochs=1, surrogate_size=64)
  config.job = "pipeline"
  config.pretrain = tiny_pretrain_block(epochs=1, num_examples=120)
  config.probe = tiny_probe_block(epochs=2)
  config.verify = defaults.verify_block()
  config.verify.enabled, config.verify.innocents = True, "attacker_pretrain"
  config.verify.num_samples, config.verify.watermark_samples = 60, 30
  config.verify.permutations, config.verify.watermark_seed = 999, 7
  config.watermark = defaults.watermark_block()
  config.watermark.enabled, config.watermark.seed, config.watermark.epochs = True, 7, 1
  config.watermark.batch_size = 32
  out = pipeline.run(config, str(tmp_path), print_table=False)
  v = out["verification"]
  assert set(v["stolen"]) == {"fidelity", "encoder_watermark", "dataset_inference"}
  assert set(v["innocents"]) == {"attacker_pretrain"} and v["innocents"]["attacker_pretrain"]
  marks = list((tmp_path / "watermark").iterdir())
  assert len(marks) == 1
  measured = json.load(open(marks[0] / "summary.json"))
  # 120 private images, then 30 tinted toward the trigger colour and 30 away (a share of 1/4).
  assert measured["num_images"] == 120 and measured["stamped"] == 60
  assert len(list((tmp_path / "verify").iterdir())) == 2
  again = pipeline.run(config, str(tmp_path), print_table=False)
  assert again["verification"] == v


def test_a_suspect_behind_an_http_api_is_billed_for_every_query(tmp_path):
  """The suspect served by our HTTP API: the verifier pays with a key, and the server's
  ledger bills exactly the queries the summary reports."""
  from stolen_jax.eaas import ledger as ledger_lib, server
  from test_serve import ThreadServer
  ledger = ledger_lib.Ledger(str(tmp_path / "ledger.sqlite"))
  app = server.make_app(ve.stolen, ledger, image_size=16, feature_dim=ve.DIM,
                        model_info={"fingerprint": "suspect"}, batch_window_ms=0)
  key = ledger.add_key("verifier", budget=2000)
  with ThreadServer(app) as url:
    config = _config("stolen", num_samples=200, methods="fidelity")
    config.verify.suspect, config.verify.api_key = url, key
    out = _run(config, tmp_path)
  assert out["combined"]["stolen"]
  assert out["suspect_queries"] == 200 == ledger.authenticate(key).used


def test_the_attackers_innocent_is_one_stage_whatever_the_cells_attack():
  from conftest import tiny_steal_config
  from stolen_jax import steal
  from stolen_jax.verify import study
  keys = set()
  for attack, size in (("stolenencoder", 32), ("conventional", 32), ("rda", 8)):
    config = tiny_steal_config("target", attack=attack, surrogate_size=size)
    config.verify = defaults.verify_block()
    config.verify.innocent_surrogate_size = 32
    config = study.attacker_pretrain_config(config)
    steal.validate_settings(config.steal)
    keys.add(json.dumps(steal.steal_settings(config), sort_keys=True))
  assert len(keys) == 1


def test_a_watermarked_target_and_verification_are_part_of_a_cells_key():
  from stolen_jax import sweep
  config = _config("stolen")
  config.job = "sweep"
  plain = defaults.demo_config()
  with_blocks = defaults.demo_config()
  with_blocks.verify, with_blocks.watermark = defaults.verify_block(), defaults.watermark_block()
  assert sweep.cell_key(plain) == sweep.cell_key(with_blocks)  # Disabled: keys unchanged.
  with_blocks.watermark.enabled = True
  marked = sweep.cell_key(with_blocks)
  with_blocks.verify.enabled = True
  assert len({sweep.cell_key(plain), marked, sweep.cell_key(with_blocks)}) == 3
