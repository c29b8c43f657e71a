"""Table XIV (feature rounding) at demo scale: rounding every answer to m decimals.

Run (embedded data, no download; about 8 minutes on 2 CPU cores with the target, 2026-12-02):
  python -m stolen_jax.main --config=configs/defenses/round.py
Paper (Table XIV, CIFAR-10 target, GTSRB): TA/SA 72.87/77.05 (m=1), 80.50/79.08 (m=2),
80.82/78.59 (m=3): rounding leaves SA about TA; it does not stop the attack.
"""

from stolen_jax import defaults, sweep


def get_config():
  config = defaults.demo_config()
  config.job = "sweep"
  config.defense.name = "round"
  config.sweep = sweep.sweep_block()
  config.sweep.axes = "defense.decimals=3,2,1,0"
  config.sweep.paper = "3:80.82/78.59; 2:80.50/79.08; 1:72.87/77.05"
  config.sweep.note = "paper: Table XIV (CIFAR-10 target, GTSRB downstream)."
  config.sweep.doc_section = 'Feature rounding (Table XIV): configs/defenses/round.py'
  return config
