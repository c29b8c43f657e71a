"""What a person reads: one progress bar per stage, one line per finished stage, the table.

Bars are tqdm's, on stderr, and only on a terminal: in CI or a file, where carriage returns
would pile up, the bar is off and the trainers' periodic progress log lines (absl, every
``Progress.every_secs``) say the same in plain lines. Per-step metrics always go to
``metrics.jsonl`` and TensorBoard; ``--verbosity=0`` shows the detailed log on the console.
"""

import sys

from tqdm.auto import tqdm

_quiet = {"on": False}


def set_quiet(quiet: bool) -> None:
  """Quiet: no bars, no stage lines (tests, library use)."""
  _quiet["on"] = quiet


def _main_process() -> bool:
  import jax
  return jax.process_index() == 0


def interactive() -> bool:
  """Whether bars can be drawn (stderr is a terminal, and this is process 0)."""
  return not _quiet["on"] and sys.stderr.isatty() and _main_process()


def bar(name: str, total: int, initial: int = 0, unit: str = "step"):
  """A progress bar for a stage of ``total`` steps (disabled off a terminal)."""
  return tqdm(total=total, initial=initial, desc=f"{name:>8}", unit=unit, leave=False,
              dynamic_ncols=True, disable=not interactive(), file=sys.stderr,
              bar_format="{desc} {bar} {n_fmt}/{total_fmt} [{elapsed}<{remaining}, "
                         "{rate_fmt}]{postfix}")


def stage_line(stage: str, text: str) -> None:
  """One line when a stage finishes or is restored, e.g. 'target  trained in 81 s ...'."""
  if not _quiet["on"] and _main_process():
    print(f"{stage:>8}  {text}", flush=True)
