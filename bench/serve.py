"""Throughput and latency of the HTTP API on loopback: images/s, p50/p99 per request, at 1,
4 and 16 concurrent clients, with and without the server's batching window.

  python bench/serve.py --checkpoint=workdir/demo/pretrain --requests=40 --batch=32

Serves the checkpoint's encoder (no defense) in-process with uvicorn on a free port and
drives it with threads of ``HTTPService`` clients (one account each); every request is a
fresh batch (fresh idempotency key), billed.
"""

import concurrent.futures
import os
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

_CHECKPOINT = flags.DEFINE_string("checkpoint", "workdir/demo/pretrain", "Encoder checkpoint.")
_REQUESTS = flags.DEFINE_integer("requests", 40, "Requests per client count.")
_BATCH = flags.DEFINE_integer("batch", 32, "Images per request.")


def main(_):
  import uvicorn
  from stolen_jax import parallel, runtime, steal
  from stolen_jax.eaas import client as client_lib, ledger as ledger_lib, server
  runtime.enable_compilation_cache()
  target = steal.open_target(_CHECKPOINT.value, parallel.make_mesh())
  size = int(target.meta["image_size"])
  rng = np.random.default_rng(0)
  print(f"encoder {target.meta['arch']} ({size} px), {_BATCH.value} images/request, "
        f"{_REQUESTS.value} requests per setting")
  print("| batching window | clients | images/s | p50 ms | p99 ms | device calls |")
  print("|---|---|---|---|---|---|")
  for window in (0.0, 10.0):
    for clients in (1, 4, 16):
      with tempfile.TemporaryDirectory() as tmp:
        ledger = ledger_lib.Ledger(os.path.join(tmp, "l.sqlite"))
        api = server.make_app(target.features_fn, ledger, image_size=size,
                              feature_dim=int(target.meta["feature_dim"]),
                              batch_window_ms=window, max_batch=4096)
        with socket.socket() as s:
          s.bind(("127.0.0.1", 0))
          port = s.getsockname()[1]
        srv = uvicorn.Server(uvicorn.Config(api, host="127.0.0.1", port=port, log_level="error"))
        thread = threading.Thread(target=srv.run, daemon=True)
        thread.start()
        while not srv.started:
          time.sleep(0.02)
        keys = [ledger.add_key(f"c{i}", budget=None) for i in range(clients)]
        url = f"http://127.0.0.1:{port}"
        warm = client_lib.HTTPService(url, keys[0])
        warm.query(rng.integers(0, 255, (_BATCH.value, size, size, 3), dtype=np.uint8))
        latencies = []
        per_client = max(1, _REQUESTS.value // clients)

        def run(i):
          svc = client_lib.HTTPService(url, keys[i])
          local = np.random.default_rng(i + 1)
          for _ in range(per_client):
            x = local.integers(0, 255, (_BATCH.value, size, size, 3), dtype=np.uint8)
            t0 = time.perf_counter()
            svc.query(x)
            latencies.append(time.perf_counter() - t0)
        calls0 = api.state.batcher.calls if api.state.batcher else 0
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
          list(pool.map(run, range(clients)))
        wall = time.perf_counter() - t0
        calls = (api.state.batcher.calls - calls0) if api.state.batcher else len(latencies)
        srv.should_exit = True
        thread.join(10)
        lat = np.array(latencies) * 1000
        print(f"| {window:g} ms | {clients} | {len(lat) * _BATCH.value / wall:.0f} | "
              f"{np.percentile(lat, 50):.1f} | {np.percentile(lat, 99):.1f} | {calls} |", flush=True)


if __name__ == "__main__":
  app.run(main)
