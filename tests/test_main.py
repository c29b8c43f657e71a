import os
import subprocess
import sys

import pytest

from conftest import tiny_pretrain_block
from stolen_jax import defaults, jobs
from stolen_jax.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(*args):
  env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", "stolen_jax.main", *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300)


def test_cli_typo_key_is_rejected_clearly(tmp_path):
  r = _cli("--config=configs/demo.py", "--config.pretrain.epohcs=3", f"--workdir={tmp_path}")
  assert r.returncode != 0
  assert "epohcs" in r.stderr
  assert "Traceback" not in r.stderr


def test_cli_unknown_arch_names_the_choices(tmp_path):
  r = _cli("--config=configs/demo.py", "--config.pretrain.arch=resnet19", f"--workdir={tmp_path}")
  assert r.returncode == 2
  assert "unknown pretrain.arch 'resnet19'" in r.stderr and "resnet34" in r.stderr
  assert "Traceback" not in r.stderr


def _config(**pretrain):
  config = defaults.base_config("pretrain")
  config.pretrain = tiny_pretrain_block(**pretrain)
  return config


@pytest.mark.parametrize("change,message", [
    (dict(job="fly"), "unknown job 'fly'"),
    (dict(pretrain=dict(augment="flip,blur")), "unknown augmentation 'blur'"),
    (dict(pretrain=dict(dataset="imagenet")), "bad dataset 'imagenet'"),
    (dict(pretrain=dict(optimizer="lamb")), "unknown pretrain.optimizer 'lamb'"),
    (dict(pretrain=dict(method="byol")), "unknown pretrain.method 'byol'"),
])
def test_bad_config_values_fail_before_work(change, message, tmp_path):
  config = _config(**change.get("pretrain", {}))
  if "job" in change:
    config.job = change["job"]
  with pytest.raises(ConfigError, match=message):
    jobs.run(config, str(tmp_path))


def test_default_workdir():
  from stolen_jax.main import default_workdir
  assert default_workdir("configs/steal_cifar10.py") == os.path.join("workdir", "steal_cifar10")
  assert default_workdir("configs/paper/fig2_lambda.py:cpu") == os.path.join("workdir", "fig2_lambda_cpu")


def test_cli_missing_config_file(tmp_path):
  r = _cli("--config=configs/no_such_config.py", f"--workdir={tmp_path}")
  assert r.returncode == 2 and "no_such_config.py" in r.stderr and "Traceback" not in r.stderr


def test_pipeline_checks_attack_settings_before_pretraining(tmp_path):
  from conftest import tiny_steal_config
  config = tiny_steal_config(None, distance="l3")
  config.job = "pipeline"
  with pytest.raises(ConfigError, match="unknown steal.distance 'l3'"):
    jobs.run(config, str(tmp_path))
  assert not (tmp_path / "pretrain").exists()


def test_tpu_launch_dry_run_prints_the_commands():
  r = subprocess.run(["bash", "launch/tpu_vm.sh", "--dry_run", "--create", "sj", "us-central2-b",
                      "v4-32", "gs://bkt", "configs/steal_cifar10.py",
                      "--config.steal.data_dir=gs://bkt/tfds"], cwd=ROOT, capture_output=True,
                     text=True, timeout=60)
  assert r.returncode == 0, r.stderr
  out = r.stdout
  assert "tpu-vm create sj --zone us-central2-b --accelerator-type v4-32" in out
  assert "tpu-vm scp /tmp/stolen_jax_checkout.tar.gz sj:stolen_jax.tar.gz" in out
  assert "--worker=all" in out and "launch/tpu_setup.sh bkt" in out
  assert "--workdir=/mnt/bkt/workdir/steal_cifar10 --config.multihost=True" in out
  assert "--config.steal.data_dir=gs://bkt/tfds" in out
  one_host = subprocess.run(["bash", "launch/tpu_vm.sh", "--dry_run", "sj", "z", "v4-8", "b",
                             "configs/demo.py"], cwd=ROOT, capture_output=True, text=True)
  assert "--config.multihost=False" in one_host.stdout and "tpu-vm create" not in one_host.stdout
