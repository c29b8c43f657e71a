"""The target encoder behind a metered HTTP API (keys, budgets, billing, rate limits).

Serve (terminal 1):
  python -m stolen_jax.main --config=configs/serve.py --config.serve.checkpoint=workdir/demo/pretrain
Create a key (a budget of 1,000 queries at $1.2 per 1,000, Clarifai's price, §VI):
  python -m stolen_jax.main --config=configs/serve.py --config.serve.action=add_key \\
      --config.serve.name=attacker --config.serve.budget=1000
Steal through it (terminal 2):
  STOLEN_JAX_API_KEY=sk-... python -m stolen_jax.main --config=configs/demo.py \\
      --config.job=steal --config.steal.target=http://127.0.0.1:8000
A defense applies server-side: --config.defense.name=topk --config.defense.k=16.
"""

from stolen_jax import defaults


def get_config():
  config = defaults.base_config("serve")
  config.serve = defaults.serve_block()
  return config
