"""The query stage alone, in a process the crash-consistency test kills at random times:
python tests/kill_query_child.py DIR N BATCH [URL KEY]

Queries N deterministic images in batches of BATCH through an in-process metered service
(or, with URL and KEY, the HTTP API), into a keyed answer cache in DIR; prints 'ready' once
imported and 'done' at the end. The fake encoder sleeps per batch so kills land anywhere
in the stage: before, during and after paying, logging and storing.
"""

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def images(n):
  return np.random.default_rng(1234).integers(0, 255, (n, 4, 4, 3), dtype=np.uint8)


def slow_features(x):
  time.sleep(0.03)
  from fake_api_server import fake_features
  return fake_features(x)


def slow_disk(eaas):
  """Each write to the cache takes a while, as on a slow disk, so that kills often land
  between paying for a batch and storing its answers (the window that must be safe)."""
  store = eaas.FeatureCache.store

  def slow_store(self, indices, answers):
    time.sleep(0.04)
    return store(self, indices, answers)
  eaas.FeatureCache.store = slow_store


def main(directory, n, batch, url=None, key=None):
  from stolen_jax import eaas
  slow_disk(eaas)
  x = images(n)
  cache = eaas.FeatureCache(directory, "surrogate", n, eaas.cache.fingerprint(x),
                            keyed_directory=True)
  if url:
    from stolen_jax.eaas.client import HTTPService
    service = HTTPService(url, key, retries=40, backoff_s=0.05)
    service.attach_log(os.path.join(directory, "api_queries.jsonl"))
  else:
    service = eaas.QueryService(slow_features, log_path=os.path.join(directory, "queries.jsonl"))
  print("ready", flush=True)
  eaas.query_with_cache(service, x, cache, batch)
  print("done", service.queries_used, flush=True)


if __name__ == "__main__":
  args = sys.argv[1:]
  main(args[0], int(args[1]), int(args[2]), *(args[3:5] if len(args) > 3 else []))
