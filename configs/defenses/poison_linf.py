"""Table XV(b) (feature poisoning, ‖δ‖∞ ≤ ε) at demo scale.

Run (embedded data, no download; about 8 minutes on 2 CPU cores, 2026-12-02):
  python -m stolen_jax.main --config=configs/defenses/poison_linf.py
As configs/defenses/poison_l2.py with the ℓ∞ ball (sign-gradient steps); the shadow
encoder is the same stage, trained once for both.
Paper (Table XV(b), CIFAR-10 target, GTSRB): TA/SA 80.67/79.43 (ε=0), 79.29/77.96 (0.01),
74.18/71.25 (0.03), 70.75/56.52 (0.05), 65.61/50.13 (0.07), 56.92/40.27 (0.1).
"""

from stolen_jax import defaults, sweep


def get_config():
  config = defaults.demo_config()
  config.job = "sweep"
  config.defense.name = "poison"
  config.defense.norm = "linf"
  config.defense.steps = 10
  config.defense.shadow.epochs = 10
  config.sweep = sweep.sweep_block()
  config.sweep.axes = "defense.epsilon=0,0.03,0.1,0.3"
  config.sweep.doc_section = 'Feature poisoning, ‖δ‖∞ ≤ ε (Table XV b): configs/defenses/poison_linf.py'
  return config
