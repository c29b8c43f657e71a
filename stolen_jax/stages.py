"""Stages keyed by the settings that determine them: a result is reused only where it is valid.

Every stage (pretrain, query, steal, shadow, probe) writes into ``<workdir>/<stage>/<key>/``.
``key`` is a stable hash of the settings that determine the stage's output together with the
keys (or content fingerprints) of what it reads, so:

* the same settings find the same directory: a finished stage is restored, a killed one
  resumes from its checkpoints;
* other settings find another directory, computed afresh; the old one stays, so switching
  back restores it, and answers already paid for stay reusable where they are valid;
* ``stage.json`` in each directory records the full settings, so a directory says what it is.

Settings that cannot change a result (where logs go, how often, dispatch chunking, batch
sizes of inference) are left out of keys; everything else is in.
"""

import contextlib
import dataclasses
import hashlib
import json
import os
from typing import Any, Callable, Optional

from absl import logging

from stolen_jax.errors import ConfigError, UserError

# Keys of config blocks that do not change a stage's output.
NON_SEMANTIC = frozenset({
    "log_every_steps", "steps_per_dispatch", "checkpoint_every_epochs", "data_dir",
    "query_batch_size", "feature_batch_size", "query_budget", "target", "api_key", "api_keys", "encoder", "price_per_1000",
    "max_weights_gb",  # A reading limit: what is read is the same under any limit it passes.
})


def plain(value: Any) -> Any:
  """A JSON-able, canonical copy: ConfigDicts and tuples become dicts and lists."""
  if hasattr(value, "to_dict"):
    value = value.to_dict()
  if isinstance(value, dict):
    return {str(k): plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [plain(v) for v in value]
  return value


def settings_of(block, exclude=()) -> dict:
  """The settings of a config block that determine a stage's output."""
  d = plain(block)
  drop = NON_SEMANTIC | set(exclude)
  return {k: v for k, v in d.items() if k not in drop}


def _canonical(value: Any) -> Any:
  """Integral floats as ints (20.0 and 20 are the same setting); bools kept."""
  if isinstance(value, dict):
    return {k: _canonical(v) for k, v in value.items()}
  if isinstance(value, list):
    return [_canonical(v) for v in value]
  if isinstance(value, float) and value.is_integer() and abs(value) < 2 ** 53:
    return int(value)
  return value


def key_of(record: Any) -> str:
  """A stable 10-hex-digit hash of a JSON-able record (sorted keys, canonical numbers)."""
  text = json.dumps(_canonical(plain(record)), sort_keys=True, separators=(",", ":"), default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:10]


def diff(old: Any, new: Any, prefix: str = "") -> list[str]:
  """Dotted paths whose values differ between two records, as 'path: old -> new'."""
  if isinstance(old, dict) and isinstance(new, dict):
    out = []
    for k in sorted(set(old) | set(new)):
      path = f"{prefix}.{k}" if prefix else str(k)
      if k not in old:
        out.append(f"{path}: (none) -> {new[k]!r}")
      elif k not in new:
        out.append(f"{path}: {old[k]!r} -> (none)")
      else:
        out += diff(old[k], new[k], path)
    return out
  return [] if old == new else [f"{prefix or '(value)'}: {old!r} -> {new!r}"]


def write_json_atomic(path: str, record: Any, **kw) -> None:
  """Writes JSON through a temp file and ``os.replace``: a crash never leaves half a file.
  In a multi-process job only process 0 writes."""
  from stolen_jax import parallel
  if not parallel.is_main():
    return
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(record, f, **kw)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def read_json(path: str) -> Optional[Any]:
  """The JSON at ``path``, or None if it is missing or damaged (a warning says which)."""
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      return json.load(f)
  except (ValueError, UnicodeDecodeError) as e:
    logging.warning("ignoring damaged %s (%s); the stage will be recomputed", path, e)
    return None


# Summary fields that hold paths. Paths inside the workdir are stored relative to it and
# resolved against the workdir they are read from, so a workdir can be copied or moved
# (to a bucket, another machine) and still reads its own stages, never the original's.
PATH_FIELDS = ("stage_dir", "query_stage", "stack_dir", "target")


@dataclasses.dataclass
class Stage:
  """One keyed stage directory."""
  name: str
  key: str
  dir: str
  record: dict  # {"settings": ..., "upstream": ...}
  workdir: str = ""

  def _root(self) -> str:
    """The workdir this stage was opened in (stage dirs are <workdir>/<stage>/<key>)."""
    return os.path.abspath(self.workdir or os.path.dirname(os.path.dirname(self.dir)))

  def _relative_paths(self, summary: dict) -> dict:
    root = self._root()
    out = dict(summary)
    for k in PATH_FIELDS:
      v = out.get(k)
      if isinstance(v, str) and os.path.isabs(v):
        rel = os.path.relpath(v, root)
        if rel != ".." and not rel.startswith(".." + os.sep):
          out[k] = rel
    return out

  def _resolve_paths(self, summary: Optional[dict]) -> Optional[dict]:
    if summary is None:
      return None
    root = self._root()
    out = dict(summary)
    for k in PATH_FIELDS:
      v = out.get(k)
      if isinstance(v, str) and v and not os.path.isabs(v) and "://" not in v:
        out[k] = os.path.join(root, v)
    out["stage_dir"] = self.dir  # Wherever the workdir is now.
    return out

  def completed(self) -> Optional[dict]:
    """The stage's summary if it finished (``complete`` true in ``summary.json``), else None
    (process 0's reading, on every process)."""
    from stolen_jax import parallel
    summary = read_json(os.path.join(self.dir, "summary.json"))
    if not (isinstance(summary, dict) and summary.get("complete")):
      summary = None
    summary = parallel.agree(summary)
    checkpoints = os.path.join(self.dir, "checkpoints")
    if summary is not None and summary.get("final_step") and os.path.isdir(checkpoints):
      from stolen_jax import checkpoint
      why = parallel.agree(checkpoint.step_unreadable(checkpoints, int(summary["final_step"])))
      if why:
        # Never report a stage as finished from an earlier checkpoint: it trains again,
        # resuming from the newest intact checkpoint (the damaged one is set aside).
        logging.warning("%s stage %s was finished but %s; it is trained again from its newest "
                        "intact checkpoint", self.name, self.dir, why)
        self.write_summary({**summary, "complete": False, "reopened": why})
        return None
    return self._resolve_paths(summary)

  def finished_here(self) -> bool:
    """Whether ``summary.json`` says complete (this process's reading; no collective)."""
    summary = read_json(os.path.join(self.dir, "summary.json"))
    return isinstance(summary, dict) and bool(summary.get("complete"))

  @contextlib.contextmanager
  def claimed(self, done: Optional[Callable[[], bool]] = None):
    """Holds the stage's lease (``leases``) while the body computes the stage: yields True
    to compute it, or False when another process finished it meanwhile (restore it);
    ``done()`` says whether it is finished (default: ``summary.json`` says complete). In a
    multi-process job process 0 holds the lease for all and every process gets its answer."""
    from stolen_jax import leases, parallel
    done = done or self.finished_here
    lease = None
    if parallel.is_main():
      lease = leases.acquire(self.dir, done=done)
      if lease is not None and done():  # Finished just before the claim.
        lease.release()
        lease = None
    mine = bool(parallel.agree(lease is not None))
    try:
      yield mine
      if lease is not None:
        lease.check()
    finally:
      if lease is not None:
        lease.release()

  def write_summary(self, summary: dict) -> dict:
    """Writes ``summary.json`` atomically, tagged with the stage's key; returns it."""
    summary = {**summary, "stage_key": self.key}
    write_json_atomic(os.path.join(self.dir, "summary.json"), self._relative_paths(summary),
                      indent=2)
    return summary


def _siblings(root: str, key: str) -> list[tuple[str, dict]]:
  out = []
  if os.path.isdir(root):
    for d in sorted(os.listdir(root)):
      if d != key:
        rec = read_json(os.path.join(root, d, "stage.json"))
        if isinstance(rec, dict) and "key" in rec:
          out.append((d, rec))
  return out


def finished_equivalent(workdir: str, name: str, settings: dict, upstream: dict,
                        normalise: Callable[[dict], dict]) -> Optional[Stage]:
  """A finished stage ``name`` under an older key whose settings, passed through
  ``normalise`` (which drops what an earlier key held but no longer determines the stage),
  equal ``settings``: its output is this stage's, so it is reused rather than recomputed."""
  record = {"settings": plain(settings), "upstream": plain(upstream)}
  key = key_of(record)
  root = os.path.join(workdir, name)
  for other, rec in _siblings(root, key):
    if not isinstance(rec.get("settings"), dict):
      continue
    old = {"settings": normalise(dict(rec["settings"])), "upstream": rec.get("upstream", {})}
    if key_of(old) != key:
      continue
    stage = Stage(name, other, os.path.join(root, other),
                  {"settings": rec["settings"], "upstream": rec.get("upstream", {})}, workdir)
    if stage.completed() is not None:
      return stage
  return None


def open_stage(workdir: str, name: str, settings: dict, upstream: Optional[dict] = None,
               strict: bool = False) -> Stage:
  """The directory of stage ``name`` for these settings (created with its ``stage.json``).

  When other settings of the same stage exist, a log line names what changed; with
  ``strict`` that is a ConfigError instead (nothing is computed).
  """
  record = {"settings": plain(settings), "upstream": plain(upstream or {})}
  key = key_of(record)
  root = os.path.join(workdir, name)
  directory = os.path.join(root, key)
  path = os.path.join(directory, "stage.json")
  from stolen_jax import parallel
  existing = read_json(path)
  message = None
  if existing is None and parallel.is_main():
    others = _siblings(root, key)
    if others:
      # Name the nearest existing stage and what differs from it, so a user sees why.
      nearest, rec = min(others, key=lambda o: len(diff(o[1], record)))
      changes = diff({k: rec.get(k) for k in record}, record)
      message = (f"{name}: settings differ from the existing stage {nearest} in "
                 f"{'; '.join(changes[:6])}{' ...' if len(changes) > 6 else ''}")
      if strict:
        message += f" (strict: use another workdir, or delete {root}/{nearest})"
  if strict and parallel.agree(message):  # Every process stops, not only the one that saw it.
    raise ConfigError(parallel.agree(message))
  if existing is None and parallel.is_main():
    if message:
      logging.info("%s; computing it afresh in %s", message, directory)
    try:
      write_json_atomic(path, {"stage": name, "key": key, **record}, indent=2)
    except (NotADirectoryError, FileExistsError, PermissionError) as e:
      raise UserError(f"cannot create the stage directory {directory}: {e}") from None
  return Stage(name, key, directory, record, workdir)


def find_stage_dirs(root: str) -> list[str]:
  """Keyed stage directories directly under ``root`` (those with a ``stage.json``)."""
  from stolen_jax import checkpoint
  return checkpoint.find_stage_dirs(root)
