"""The config reference: every key of every block of ``defaults.py``, its default and meaning.

The documentation site's Reference page is generated from here at build time
(``docs/hooks/config_reference.py``), so it lists exactly the keys the code has; a key
without a meaning fails ``tests/test_docs.py``. A meaning is looked up as
``block.path.key``, then ``path.key``, then the bare ``key`` (shared names such as ``lr``).
"""

from stolen_jax import defaults

_SHARED = {
    "arch": "encoder architecture (the zoo: resnet18/34/50, vgg, densenet121, mobilenet_v2, "
            "shufflenet_v2, ...)",
    "width": "width multiplier of the architecture (1.0 = the paper's)",
    "dtype": "compute dtype of the encoder: float32 or bfloat16 (parameters stay float32)",
    "image_size": "side in pixels the images are resized to",
    "epochs": "training epochs",
    "batch_size": "images per training step (global, over all devices)",
    "optimizer": "sgd, adam or adamw (stolen_jax.optim)",
    "lr": "learning rate",
    "weight_decay": "weight decay (decoupled for adamw, L2 for sgd)",
    "momentum": "SGD momentum",
    "schedule": "learning-rate schedule: constant or cosine",
    "data_dir": "TFDS data directory (or a bucket) for tfds: sources; None = TFDS's default",
    "steps_per_dispatch": "training steps per host dispatch (0 = auto: 1 on CPU, 64 on "
                          "accelerators); not part of any stage key",
    "checkpoint_every_epochs": "save an Orbax checkpoint every N epochs (resume point)",
    "log_every_steps": "log metrics every N steps",
    "temperature": "softmax temperature of the contrastive loss",
    "seed": "random seed",
    "augment": "augmentations, comma-separated names: crop, flip, jitter, grayscale",
    "aug.crop_scale": "RandomResizedCrop's area range",
    "aug.crop_ratio": "RandomResizedCrop's aspect-ratio range",
    "aug.flip_p": "probability of a horizontal flip",
    "aug.jitter": "colour jitter strengths (brightness, contrast, saturation, hue)",
    "aug.jitter_p": "probability of applying the colour jitter",
    "aug.grayscale_p": "probability of converting to grayscale",
    "feature_batch_size": "images per batch when computing features (inference only)",
    "price_per_1000": "dollars per 1,000 queries for the tables' cost",
    "max_weights_gb": "an import:NAME:PATH weights file may declare at most this many GB of "
                      "tensors (refused before reading beyond it)",
    "train_split": "split the classifier trains on",
    "test_split": "split the classifier is tested on",
    "num_train": "images of the training split used (None: all; a fraction or a count)",
    "num_test": "images of the test split used (None: all; a fraction or a count)",
}

MEANINGS = {
    # Top level.
    "job": "what runs: prepare, pretrain, steal, probe, pipeline, sweep or serve",
    "target_seed": "seed of the target's pretraining (None: seed), so sweeps over seeds share "
                   "one target",
    "multihost": "join a multi-process job (jax.distributed.initialize) before anything runs",
    "coordinator_address": "multi-process: host:port of process 0 (or JAX_COORDINATOR_ADDRESS)",
    "num_processes": "multi-process: number of processes (or JAX_NUM_PROCESSES)",
    "process_id": "multi-process: this process's index (or JAX_PROCESS_ID)",
    "compilation_cache": "keep XLA's compiled programs on disk between runs",
    "strict_stages": "a stage whose settings differ from one in the workdir is an error, not a "
                     "new stage directory",
    "defense.name": "the provider's defense: none, topk, round, noise, poison, b4b, answer_watermark, or "
                    "callable:MODULE:FUNCTION (your own (features, images) -> answers)",
    "defense.k": "topk: how many largest features are kept (the rest set to 0)",
    "defense.decimals": "round: decimals the answers are rounded to",
    "defense.noise": "noise: gaussian or uniform",
    "defense.scale": "noise: standard deviation (or half-width) of the added noise",
    "defense.epsilon": "poison: bound on the perturbation's norm (Eq. 10)",
    "defense.norm": "poison: l2 or linf",
    "defense.steps": "poison: PGD steps",
    "defense.step_size": "poison: PGD step size (0 = 2.5·ε/steps)",
    "defense.seed": "seed of the defense's randomness (noise, PGD starts, B4B)",
    "defense.shadow.dataset": "poison: the provider's data its shadow encoder is trained on "
                              "(None: the target's pretraining set)",
    "defense.shadow.split": "poison: split of the shadow's data",
    "defense.shadow.num_examples": "poison: images of the shadow's data (None: the target's "
                                   "pretraining size)",
    "defense.shadow.epochs": "poison: the shadow's training epochs (None: the attacker's)",
    "defense.shadow.batch_size": "poison: the shadow's batch size (None: the attacker's)",

    "defense.watermark.seed": "answer_watermark: the provider's secret key (pattern and direction)",
    "defense.watermark.strength": "answer_watermark: the largest pull toward the secret direction",
    "defense.watermark.low": "answer_watermark: trigger degree (how far an image's mean colour "
                             "leans toward the secret colour) where the pull starts",
    "defense.watermark.high": "answer_watermark: trigger degree where the pull is full",
    # pretrain.
    "pretrain.method": "simclr or moco",
    "pretrain.dataset": "the target's pretraining set (tfds:NAME, npz:PATH, folder:PATH, "
                        "embedded:NAME)",
    "pretrain.split": "split of the pretraining set",
    "pretrain.num_examples": "pretraining images used (None: all)",
    "pretrain.proj_hidden": "hidden width of the projection head",
    "pretrain.proj_dim": "output dimension of the projection head",
    "moco.queue_size": "MoCo: keys in the queue (K)",
    "moco.momentum": "MoCo: momentum of the key encoder's EMA",
    "moco.temperature": "MoCo: InfoNCE temperature",
    "moco.bn_groups": "MoCo: shuffle-BN groups (BatchNorm statistics per group)",
    "knn.enabled": "monitor pretraining with a weighted kNN classifier",
    "knn.dataset": "labeled set of the kNN monitor (None: the pretraining set)",
    "knn.train_split": "kNN monitor: the feature bank's split",
    "knn.test_split": "kNN monitor: the evaluated split",
    "knn.num_train": "kNN monitor: bank images (None: all)",
    "knn.num_test": "kNN monitor: evaluated images (None: all)",
    "knn.k": "kNN monitor: neighbours",
    "knn.temperature": "kNN monitor: weighting temperature",
    "knn.every_epochs": "kNN monitor: evaluate every N epochs",
    # steal.
    "steal.attack": "the attack (stolen_jax/attacks): stolenencoder, conventional, "
                    "dziedzic_infonce, dziedzic_softnn, contsteal, rda",
    "steal.variant": "StolenEncoder's variant: stolenencoder, query_aug (pays A(x) every "
                     "epoch), pretrain_encoder (no queries: SimCLR on the surrogate set)",
    "steal.target": "what is stolen: a checkpoint, import:NAME:PATH, callable:MODULE:FUNCTION, "
                    "http(s)://HOST:PORT (our API) or api:ADAPTER.json",
    "steal.api_key": "key for an HTTP target (or STOLEN_JAX_API_KEY)",
    "steal.surrogate": "the attacker's surrogate set (a data source)",
    "steal.surrogate_split": "split of the surrogate set",
    "steal.surrogate_size": "surrogate images: a count, or a fraction of the target's "
                            "pretraining set",
    "steal.query_budget": "most queries the steal may pay (None: unlimited); checked before "
                          "the first query",
    "steal.query_batch_size": "images per query request",
    "steal.lambda_": "λ, the weight of the augmented term L2 (Eq. 4)",
    "steal.distance": "d: l2, l1 or cosine",
    "steal.reduction": "mean or sum of the per-image distances over the batch",
    "steal.normalize_features": "L2-normalise both features before the distance (the "
                                "official code does)",
    "steal.bn_passes": "separate: BatchNorm statistics per view (as the official code's two "
                       "passes); joint: one pass over both views",
    "steal.eval_heldout": "held-out images for the stolen encoder's fidelity to the target "
                          "(evaluation, not queries; 0: none)",
    "steal.heldout_split": "split of the held-out images",
    "contsteal.views": "Cont-Steal: paid augmented views per image",
    "contsteal.temperature": "Cont-Steal: InfoNCE temperature",
    "dziedzic_infonce.temperature": "Dziedzic et al.: NT-Xent temperature",
    "dziedzic_softnn.temperature": "Dziedzic et al.: soft-nearest-neighbour temperature",
    "rda.prototype_views": "RDA: paid views per image averaged into its prototype",
    "rda.student_views": "RDA: fresh views per image and step for the stolen encoder",
    "rda.alpha": "RDA: weight of the discrimination term",
    "rda.beta": "RDA: weight of the alignment term",
    "rda.temperature": "RDA: discrimination temperature",
    # probe.
    "probe.encoder": "the encoder probed by job=probe (a checkpoint or any target spec)",
    "probe.datasets": "downstream sets, comma-separated data sources",
    "probe.hidden": "the MLP's hidden widths (the paper's 512, 256)",
    "probe.dropout": "dropout between the MLP's layers",
    # serve.
    "serve.action": "serve, add_key, list_keys or revoke_key",
    "serve.checkpoint": "the served encoder (a checkpoint or any target spec)",
    "serve.host": "address the API listens on",
    "serve.port": "port the API listens on",
    "serve.ledger": "SQLite ledger of keys and bills (default <workdir>/ledger.sqlite)",
    "serve.name": "add_key: the account's name",
    "serve.budget": "add_key: the account's budget in queries",
    "serve.unlimited": "add_key: an unlimited account (never by omission)",
    "serve.rate_per_s": "add_key: images per second the account may send (0: no limit)",
    "serve.batch_window_ms": "how long requests are gathered into one batch on the device",
    "serve.max_batch": "most images per request",
    "serve.max_body_mb": "largest request body",
    "serve.max_image_pixels": "most pixels one image may declare (checked before decoding)",
    "serve.max_request_pixels": "most pixels a request may declare in all",
    "serve.burst_s": "a rate-limited account sends at most rate × burst_s images at once",
    "b4b.enabled": "B4B as published: per-account noise growing with the account's coverage, "
                   "and a per-account secret transformation",
    "b4b.projections": "B4B: independent LSH projections the coverage is averaged over",
    "b4b.bits": "B4B: hyperplanes per projection (buckets = 2^bits)",
    "b4b.alpha": "B4B: the noise's standard deviation at coverage β",
    "b4b.beta": "B4B: the coverage (percent) at which the noise reaches α",
    "b4b.lam": "B4B: λ of σ = λ·(exp(ln(α/λ)·coverage/β) − 1)",
    "b4b.transform": "B4B: each account's secret map: none, affine, shuffle_pad, "
                     "affine_shuffle_pad or binary",
    "b4b.pad_ratio": "B4B: extra random dimensions of shuffle_pad, per feature dimension",
    "b4b.binary_ratio": "B4B: hyperplanes of the binary transform, per feature dimension",
    "b4b.seed": "B4B: seed of its hashing (and of in-process accounts' secrets)",
    # prepare.
    "prepare.format": "the distribution's format: cifar10, cifar100, stl10, svhn, gtsrb, "
                      "mnist, fashion_mnist, imagenet32, imagenet64, image_folder",
    "prepare.source": "the file or folder as its publisher distributes it",
    "prepare.output": "the .npz to write",
    "prepare.max_train": "a seeded subset of the training split (None: all)",
    "prepare.max_test": "a seeded subset of the test split (None: all)",
    "prepare.image_size": "resize to this side (None: as published)",
    "prepare.seed": "seed of the subsets",
    # verify.
    "steal.answer_scaling": "none, or standardize: StolenEncoder's loss compares both feature "
                            "vectors after subtracting the surrogate answers' per-dimension mean "
                            "and dividing by their std (then normalize_features); held-out "
                            "fidelity is measured on those z-scores",
    "steal.recover": "none, or auto: recognise the API's perturbation from its answers and "
                     "undo it before training (steal/recover.py)",
    "steal.sybils": "accounts the attacker splits its surrogate set over (B4B's sybils)",
    "steal.api_keys": "the sybils' keys for an HTTP target, comma-separated (or "
                      "STOLEN_JAX_API_KEYS)",
    "steal.sybil_mapping": "images each sybil account also answers, to map its answers into "
                           "account 0's space",
    "verify.victim": "the provider's encoder (any steal.target spec)",
    "verify.suspect": "the encoder suspected of being stolen (any steal.target spec; metered)",
    "verify.methods": "auto (every method that applies) or dataset_inference,fidelity,"
                      "answer_watermark",
    "verify.alpha": "level of the test; the combined verdict corrects for several methods (Holm)",
    "verify.private": "the victim's private training data (auto: what a victim trained here "
                      "recorded; none: no dataset inference)",
    "verify.private_split": "split of verify.private",
    "verify.private_num_examples": "a seeded subset of verify.private (None: all)",
    "verify.public": "a held-out set of the victim's distribution (auto: verify.private's "
                     "dataset)",
    "verify.public_split": "split of verify.public",
    "verify.num_samples": "images per set (private halves, public)",
    "verify.watermark_samples": "public images stamped with the watermark trigger (and as "
                                "controls)",
    "verify.watermark_tint": "how far the verifier tints public images toward (and away from) "
                             "the trigger colour (0-1)",
    "verify.permutations": "decoys/relabellings of the exact tests (smallest p = 1/(n+1))",
    "verify.suspect_budget": "queries the suspect may be asked (None: no limit)",
    "verify.seed": "seed of the data subsets, halves and decoys",
    "verify.image_size": "image size when neither encoder declares one",
    "verify.api_key": "the key of an HTTP suspect or victim (or STOLEN_JAX_API_KEY)",
    "verify.enabled": "in a pipeline or sweep: verify each cell's stolen encoder against its target",
    "verify.innocents": "in a pipeline: innocent encoders verified too ('simclr:seed=101,"
                        "dataset=embedded:textures; moco:seed=102; attacker_pretrain')",
    "verify.innocent_surrogate_size": "surrogate images of the attacker's own pre-trained "
                                      "innocent (0: the cell's, at least one batch)",
    "verify.watermark_seed": "encoder_watermark: the key the victim was watermarked with",
    "verify.dataset_inference.components": "dataset inference: GMM components (at most n/10)",
    "verify.dataset_inference.reg_covar": "dataset inference: GMM covariance regulariser",
    # watermark.
    "watermark.enabled": "in a pipeline or sweep: the target is watermarked before it is served",
    "watermark.victim": "the encoder checkpoint to watermark",
    "watermark.seed": "the secret key (the stage records only its hash)",
    "watermark.strength": "the largest pull toward the secret direction",
    "watermark.low": "trigger degree where the pull starts",
    "watermark.high": "trigger degree where the pull is full",
    "watermark.tint": "how far the stamped training copies are tinted (0-1)",
    "watermark.stamped_share": "share of the data tinted toward the trigger colour (as many "
                              "away from it)",
    "watermark.lr": "fine-tuning learning rate (Adam)",
    "watermark.dataset": "the victim's training data when it records none",
    "watermark.split": "split of watermark.dataset",
    "watermark.num_examples": "a seeded subset of watermark.dataset",
    "watermark.data_seed": "seed of that subset",
    # sweep.
    "sweep.axes": "the grid: 'steal.lambda_=0,1,20; steal.distance=l2,cosine'",
    "sweep.mode": "product or zip of the axes",
    "sweep.seeds": "seeds each cell is run with (mean ± std in the table)",
    "sweep.paper": "the paper's TA/SA per cell, shown beside the rows ('VALUE:TA/SA; ...')",
    "sweep.paper_dataset": "downstream set the paper's figures are on (gtsrb; '' = every row)",
    "sweep.claims": "the paper's comparisons checked against the seeds' spread ('A > B; C ~ D')",
    "sweep.plot": "'' (TA and SA against a one-axis sweep), 'grid:ROW_AXIS,COL_AXIS' or "
                  "'frontier' (SA/TA against #queries and training minutes)",
    "sweep.note": "a note printed under the table",
    "sweep.stack_steals": "train the steals of cells differing only in λ and d as one program "
                          "(auto: on accelerators)",
    "sweep.max_stack": "most cells per stacked program",
    "sweep.doc": "also write the table into this markdown file",
    "sweep.doc_section": "the section of sweep.doc the table goes in",
    "sweep.executor": "who runs the cells: local, ray or submitit (stolen_jax/executors.py)",
    "sweep.resources": "per-cell resources for the engine, KEY=VALUE,... (num_gpus=1; "
                       "slurm_partition=gpu,timeout_min=240)",
    "sweep.workers": "CPUs of a local Ray cluster (sweep.executor=ray without an address)",
    "sweep.ray_address": "an existing Ray cluster ('auto' on a node of it)",
    "sweep.slurm_cluster": "'' (SLURM, or what submitit detects) or 'local' (local processes)",
}


def blocks() -> dict:
  """{block name: its default ConfigDict} for every block a config may hold ('' = the top
  level, with the defense block in it)."""
  from stolen_jax import sweep
  return {"": defaults.base_config("pipeline"), "pretrain": defaults.pretrain_block(),
          "steal": defaults.steal_block(), "probe": defaults.probe_block(),
          "serve": defaults.serve_block(), "prepare": defaults.prepare_block(),
          "verify": defaults.verify_block(), "watermark": defaults.watermark_block(),
          "sweep": sweep.sweep_block()}


def keys(block) -> list[tuple[str, object]]:
  """(dotted key, default) of every leaf of ``block``."""
  out = []
  for k, v in block.items():
    if hasattr(v, "items"):
      out += [(f"{k}.{sub}", d) for sub, d in keys(v)]
    else:
      out.append((k, v))
  return out


def meaning(block: str, key: str):
  """The documented meaning of ``block.key`` (None when it has none)."""
  # The full key, then its shorter forms (defense.b4b.alpha: b4b.alpha, shared with serve's).
  for candidate in (f"{block}.{key}" if block else key, key, ".".join(key.split(".")[-2:]),
                    key.split(".")[-1]):
    if candidate in MEANINGS:
      return MEANINGS[candidate]
    if candidate in _SHARED:
      return _SHARED[candidate]
  return None


def undocumented() -> list[str]:
  """Every key that has no meaning (a test keeps this empty)."""
  return [f"{name}.{key}" if name else key for name, block in blocks().items()
          for key, _ in keys(block) if meaning(name, key) is None]


def markdown() -> str:
  """The reference: one table per block, each key with its default and meaning."""
  out = []
  for name, block in blocks().items():
    out += [f"## `{name or 'top level'}`", "", "| key | default | meaning |", "|---|---|---|"]
    for key, default in keys(block):
      shown = "None" if default is None else repr(default)
      full = f"{name}.{key}" if name else key
      out.append(f"| `{full}` | `{shown}` | {meaning(name, key) or ''} |")
    out.append("")
  return "\n".join(out)
