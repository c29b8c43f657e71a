"""Table XIII (top-k features) at demo scale: does keeping only the k largest features stop
the attack, and what does it cost honest customers?

Run (embedded data, no download; about 7 minutes on 2 CPU cores, 2026-12-02):
  python -m stolen_jax.main --config=configs/defenses/topk.py
Each cell is the demo's pipeline (configs/demo.py) with the API answering top-k features
(k of the demo target's 64 dimensions) to the attacker and to the target's probe alike; the
table adds the target's undefended TA and the mean cosine between defended and clean answers.
Paper (Table XIII, CIFAR-10 target, GTSRB, k of 512): TA/SA 80.67/79.43 (k=512), 78.07/78.66
(100), 72.57/74.48 (50), 56.59/61.39 (10), 47.77/51.59 (5), 26.28/21.06 (1): a small k lowers
SA, but TA drops as much or more — the defense costs the customers what it costs the attacker.
A paper-scale run: start from configs/steal_cifar10.py with the same defense and sweep keys.
"""

from stolen_jax import defaults, sweep


def get_config():
  config = defaults.demo_config()
  config.job = "sweep"
  config.defense.name = "topk"
  config.sweep = sweep.sweep_block()
  config.sweep.axes = "defense.k=64,16,4,1"
  config.sweep.note = ("k of the target's 64 feature dimensions (the paper's targets have 512: "
                       "k=64 here is 'no defense', k=8 is the paper's k=64 by proportion).")
  config.sweep.doc_section = 'Top-k features (Table XIII): configs/defenses/topk.py'
  return config
