"""A real HTTP API process over a deterministic fake encoder (no JAX), for crash tests:
python tests/fake_api_server.py LEDGER PORT"""

import sys

import numpy as np


def fake_features(images):
  return np.repeat(images.reshape(len(images), -1, 3).mean(1), 2, axis=1).astype(np.float32)


if __name__ == "__main__":
  sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.dirname(
      __import__("os").path.abspath(__file__))))
  from stolen_jax.eaas import ledger, server
  app = server.make_app(fake_features, ledger.Ledger(sys.argv[1]), image_size=4, feature_dim=6,
                        model_info={"fingerprint": "fake"}, batch_window_ms=0)
  server.serve(app, "127.0.0.1", int(sys.argv[2]))
