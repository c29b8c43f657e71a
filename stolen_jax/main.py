"""Command line: ``python -m stolen_jax.main --config=configs/<x>.py [--workdir=DIR]``.

Overrides use ml_collections syntax, e.g. ``--config.pretrain.epochs=10``; the config is
locked, so a misspelt key is rejected. ``--workdir`` defaults to ``workdir/<config name>``.
The console shows progress bars and a line per stage; ``--verbosity=0`` adds the detailed
log (every metric also goes to ``<stage>/metrics.jsonl`` and TensorBoard).
"""

import os
import sys

# TensorFlow (used only to read TFDS data) logs C++ INFO lines at import; keep the console
# for this program's own progress.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow only reads data here; its oneDNN notice is noise on every start.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (default: workdir/<config>).")


def default_workdir(config_path: str) -> str:
  """workdir/<config file stem>[_<argument>], e.g. workdir/steal_cifar10 or, for
  ``configs/paper/fig2_lambda.py:cpu``, workdir/fig2_lambda_cpu."""
  path, _, arg = config_path.partition(":")
  stem = os.path.splitext(os.path.basename(path))[0]
  return os.path.join("workdir", f"{stem}_{arg}" if arg else stem)


class _QuietLibraries:
  """Drops INFO records of libraries (Orbax logs every file it writes) from the console,
  and, unless the detailed log is asked for, the tracebacks Orbax's background threads log
  when a save fails: the failure is raised again in the main thread, where it becomes one
  error (``checkpoint.save``: "disk full while saving ...")."""
  NOISY = ("/orbax/", "/absl/testing/", "/tensorflow_datasets/")

  def __init__(self, verbose: bool):
    self.verbose = verbose

  def filter(self, record) -> bool:
    if not self.verbose and record.levelno >= 40 and (
        "/orbax/" in record.pathname  # Its threads' errors; asyncio's about Orbax's tasks:
        or ("/asyncio/" in record.pathname and "orbax" in record.getMessage())):
      return False
    return record.levelno > 20 or not any(p in record.pathname for p in self.NOISY)


def _quiet_closed_loops(hook):
  """``sys.unraisablehook`` without the "Event loop is closed" errors that tensorstore's
  write callbacks report after a failed Orbax save closed its event loop (one per write
  still in flight: dozens after a full disk); that failure is reported as one error."""
  def quiet(unraisable):
    value = unraisable.exc_value
    if isinstance(value, RuntimeError) and str(value) == "Event loop is closed":
      return
    hook(unraisable)
  return quiet


def main(argv):
  verbose = flags.FLAGS["verbosity"].present
  logging.get_absl_handler().addFilter(_QuietLibraries(verbose))
  if not verbose:
    # The console shows progress bars, one line per stage and the results; the detailed log
    # (per-step metrics, library messages) is one flag away: --verbosity=0.
    logging.set_verbosity(logging.WARNING)
    sys.unraisablehook = _quiet_closed_loops(sys.unraisablehook)
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  from stolen_jax import jobs
  from stolen_jax.errors import UserError
  try:
    config = _CONFIG.value
    config.get("job")  # A config that failed to load raises on first use.
  except OSError as e:  # The config file is missing or failed to load.
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  workdir = _WORKDIR.value or default_workdir(flags.FLAGS["config"].config_filename)
  logging.info("job=%s workdir=%s", config.job, os.path.abspath(workdir))
  try:
    jobs.run(config, workdir)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


def parse_flags(argv):
  """absl's flag parsing, with config override errors (a misspelt key, a value of the wrong
  type) reported as one line instead of ml_collections' traceback."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    message = str(e)
  except (AttributeError, KeyError, TypeError, ValueError, OSError) as e:
    message = str(e).strip("'\"").replace("\\n", " ").replace("\n", " ").replace("\\'", "'")
  print(f"error: bad command line: {message}", file=sys.stderr)
  print("usage: python -m stolen_jax.main --config=configs/<x>.py [--workdir=DIR] "
        "[--config.<key>=<value> ...]", file=sys.stderr)
  sys.exit(2)


def run():
  """The command line's entry point (``python -m stolen_jax.main``, ``stolen-jax``)."""
  # Line by line even into a file or a pipe: a user tailing a log sees each stage's line
  # when it happens, not minutes later when a block buffer fills.
  for stream in (sys.stdout, sys.stderr):
    if hasattr(stream, "reconfigure"):
      stream.reconfigure(line_buffering=True)
  flags.mark_flag_as_required("config")
  app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
  run()
