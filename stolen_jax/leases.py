"""Stage leases: one process at a time computes a stage, however many share the workdir.

A process claims a stage before any work by creating ``<stage>/lease.json`` exclusively
(``O_CREAT | O_EXCL``: atomic on a local disk, on NFS v3+ and on a gcsfuse bucket, where
``flock`` is ignored or not shared between hosts). The file names its owner (host, pid,
start) and a token; the owner proves it is alive by rewriting its own heartbeat file
(``lease.<token>.beat``) every ``ttl / 4`` seconds. Another process that finds the lease
waits, polling, and then restores what the owner finished; one that sees the heartbeat
unchanged for ``ttl`` seconds by its *own* clock (no clock is compared across hosts) takes
the lease over: it renames the lease away (one rename wins a race), creates its own and
resumes from the stage's checkpoints and journaled answers.

Guarantees and limits: two live processes never compute one stage at once; a process that
is killed holds its stage at most ``ttl`` seconds longer; a process paused (SIGSTOP, a
suspended VM) for longer than ``ttl`` loses its lease to another and is told so when it
next renews (it stops with an error rather than writing beside the new owner).
``filelock``'s ``SoftFileLock`` is the same exclusive create without expiry or takeover,
which a dead host on a shared bucket needs, so this module adds them on the same idea.
"""

import json
import os
import socket
import threading
import time
import uuid
from typing import Callable, Optional

from absl import logging

from stolen_jax.errors import UserError

DEFAULT_TTL_S = float(os.environ.get("STOLEN_JAX_LEASE_TTL_S", 60))
LEASE = "lease.json"


class LeaseLost(UserError):
  """This process's lease was taken over (it was paused longer than the lease's TTL)."""


def _read(path: str) -> Optional[dict]:
  try:
    with open(path) as f:
      record = json.load(f)
    return record if isinstance(record, dict) else {}
  except FileNotFoundError:
    return None
  except (ValueError, OSError):
    return {}  # Being written (or damaged): treated as held, and expires like any other.


def _beat_path(directory: str, token: str) -> str:
  return os.path.join(directory, f"lease.{token}.beat")


class Lease:
  """A held lease on ``directory`` (see the module docstring); ``release()`` when done."""

  def __init__(self, directory: str, token: str, ttl_s: float):
    self.directory, self.token, self.ttl_s = directory, token, ttl_s
    self.lost = False
    self._stop = threading.Event()
    self._beats = 0
    self._beat()
    self._thread = threading.Thread(target=self._renew, daemon=True, name="stage-lease")
    self._thread.start()

  def _beat(self) -> None:
    self._beats += 1
    path = _beat_path(self.directory, self.token)
    with open(path + ".tmp", "w") as f:
      f.write(str(self._beats))
    os.replace(path + ".tmp", path)

  def _renew(self) -> None:
    while not self._stop.wait(self.ttl_s / 4):
      held = _read(os.path.join(self.directory, LEASE))
      if held is None or held.get("token") != self.token:
        self.lost = True
        logging.error("the lease on %s was taken over by another process", self.directory)
        return
      self._beat()

  def check(self) -> None:
    """Raises LeaseLost when another process took this lease over."""
    held = _read(os.path.join(self.directory, LEASE))
    if held is None or held.get("token") != self.token:
      self.lost = True
    if self.lost:
      raise LeaseLost(f"this process lost its lease on {self.directory} to another (it was "
                      f"paused longer than {self.ttl_s:g} s); that process computes the stage")

  def release(self) -> None:
    """Gives the lease back (only if it is still this process's)."""
    self._stop.set()
    self._thread.join(timeout=5)
    path = os.path.join(self.directory, LEASE)
    held = _read(path)
    if held is not None and held.get("token") == self.token:
      os.remove(path)
    beat = _beat_path(self.directory, self.token)
    if os.path.exists(beat):
      os.remove(beat)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.release()


def _try_create(path: str, record: dict) -> bool:
  """Creates the lease exclusively; True only if the file then names this process (on a
  bucket the loser of a race may learn it only when its upload is refused, or by reading
  the winner's record back)."""
  try:
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
  except FileExistsError:
    return False
  try:
    with os.fdopen(fd, "w") as f:
      json.dump(record, f)
      f.flush()
      os.fsync(f.fileno())
  except OSError:  # gcsfuse: another host's create won (its precondition refused ours).
    return False
  held = _read(path)
  return held is not None and held.get("token") == record["token"]


def acquire(directory: str, ttl_s: Optional[float] = None, poll_s: float = 0.5,
            done: Optional[Callable[[], bool]] = None) -> Optional[Lease]:
  """The lease on ``directory``, waiting while a live process holds it and taking over one
  whose heartbeat stopped ``ttl_s`` ago. Returns None instead when ``done()`` turns true
  while waiting (the holder finished the stage: nothing is left to compute)."""
  ttl_s = DEFAULT_TTL_S if ttl_s is None else float(ttl_s)
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, LEASE)
  token = uuid.uuid4().hex[:16]
  me = {"host": socket.gethostname(), "pid": os.getpid(), "start": time.time(), "token": token}
  seen, said = None, False  # (holder's token, its heartbeat), and when this process saw it.
  while True:
    if _try_create(path, me):
      return Lease(directory, token, ttl_s)
    if done is not None and done():
      return None
    held = _read(path)
    if held is None:
      continue  # Released just now: try again at once.
    beat = None
    if held.get("token"):
      try:
        with open(_beat_path(directory, held["token"])) as f:
          beat = f.read()
      except OSError:
        beat = None
    now = time.monotonic()
    if seen is None or seen[0] != (held.get("token"), beat):
      seen = ((held.get("token"), beat), now)
    elif now - seen[1] > ttl_s:
      stale = f"{path}.expired-{token}"
      try:
        os.rename(path, stale)  # One process wins this rename; the others see it gone.
      except FileNotFoundError:
        continue
      logging.warning("%s: the lease of %s (pid %s) had no heartbeat for %.0f s; taken over",
                      directory, held.get("host"), held.get("pid"), now - seen[1])
      continue
    if not said:
      logging.warning("%s is being computed by %s (pid %s); waiting for it", directory,
                      held.get("host"), held.get("pid"))
      said = True
    time.sleep(poll_s)
