"""User-facing errors: raised for bad configs, missing data or checkpoints.

``main`` prints these as one line and exits non-zero instead of showing a traceback,
because they describe something the user must change, not a bug in the code.
"""


class UserError(Exception):
  """An error in what the user asked for (config, data, paths)."""


class ConfigError(UserError):
  """A config value is unknown, missing or inconsistent."""


class DataError(UserError):
  """A dataset cannot be found, prepared or read."""


class CheckpointError(UserError):
  """A checkpoint path is missing or unreadable."""


class TrainingDiverged(UserError):
  """The loss became NaN or infinite."""


def choose(kind: str, name: str, choices) -> str:
  """Returns ``name`` if it is one of ``choices``, else raises a ConfigError naming them."""
  choices = sorted(choices)
  if name not in choices:
    raise ConfigError(f"unknown {kind} {name!r}; valid choices: {', '.join(choices)}")
  return name
