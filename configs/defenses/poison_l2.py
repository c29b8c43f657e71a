"""Table XV(a) (feature poisoning, ‖δ‖₂ ≤ ε) at demo scale.

Run (embedded data, no download; about 8 minutes on 2 CPU cores, 2026-12-02):
  python -m stolen_jax.main --config=configs/defenses/poison_l2.py
The provider first trains its shadow stolen encoder (Algorithm 1 with the attacker's
settings on its own pretraining set, ``defense.shadow``; 10 epochs here), once; then every
answer is f_t(x) + δ with δ from 10 steps of projected gradient ascent on Eq. (10).
ε is on the scale of the demo target's features (mean ℓ2 norm 9-16 on the probe images; the paper's
ResNet-18 features are larger, so its ε = 1..10 are not comparable one to one).
Paper (Table XV(a), CIFAR-10 target, GTSRB): TA/SA 80.67/79.43 (ε=0), 80.73/74.14 (1),
82.43/71.12 (3), 80.44/72.85 (5), 75.81/68.38 (7), 66.91/57.56 (10): a large ε lowers SA, and
TA with it.
"""

from stolen_jax import defaults, sweep


def get_config():
  config = defaults.demo_config()
  config.job = "sweep"
  config.defense.name = "poison"
  config.defense.norm = "l2"
  config.defense.steps = 10
  config.defense.shadow.epochs = 10
  config.sweep = sweep.sweep_block()
  config.sweep.axes = "defense.epsilon=0,0.3,1,3"
  config.sweep.doc_section = 'Feature poisoning, ‖δ‖₂ ≤ ε (Table XV a): configs/defenses/poison_l2.py'
  return config
