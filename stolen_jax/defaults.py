"""Default config blocks shared by the experiment configs in ``configs/``.

Each ``configs/<experiment>.py`` starts from these blocks and overrides what its experiment
changes, so every setting has one home and the config files read like the paper's tables.
"""

import ml_collections
from ml_collections import config_dict

PAPER_PRETRAIN_AUGMENT = "crop,flip,jitter,grayscale"  # §V-A1 (SimCLR's own set)


def aug_block() -> ml_collections.ConfigDict:
  """torchvision SimCLR augmentation parameters (CIFAR-10 recipe)."""
  return ml_collections.ConfigDict(dict(
      crop_scale=(0.08, 1.0), crop_ratio=(3 / 4, 4 / 3), flip_p=0.5,
      jitter=(0.4, 0.4, 0.4, 0.1), jitter_p=0.8, grayscale_p=0.2))


def knn_block() -> ml_collections.ConfigDict:
  """kNN monitor of pretraining (weighted kNN, k=200, T=0.1, on a labeled split)."""
  return ml_collections.ConfigDict(dict(
      enabled=True, dataset=config_dict.placeholder(str), train_split="train", test_split="test",
      num_train=config_dict.placeholder(object), num_test=config_dict.placeholder(object),
      k=200, temperature=0.1, every_epochs=10))


def moco_block() -> ml_collections.ConfigDict:
  """MoCo's own settings (the paper gives none): the MoCo v2 CIFAR recipe, K=4096 keys,
  momentum 0.99, temperature 0.1; BatchNorm in 8 shuffled groups (shuffle-BN, 8 GPUs)."""
  return ml_collections.ConfigDict(dict(queue_size=4096, momentum=0.99, temperature=0.1,
                                        bn_groups=8))


def pretrain_block() -> ml_collections.ConfigDict:
  """The paper's target pretraining (§V-A1): SimCLR, ResNet-18, batch 256, Adam 1e-3, 1000 epochs."""
  return ml_collections.ConfigDict(dict(
      method="simclr",
      dataset="tfds:cifar10", split="train", data_dir=config_dict.placeholder(str),
      num_examples=config_dict.placeholder(object), image_size=32,
      arch="resnet18", width=1.0, dtype="float32",
      epochs=1000, batch_size=256,
      optimizer="adam", lr=1e-3, weight_decay=1e-6, momentum=0.9, schedule="constant",
      temperature=0.5, proj_hidden=512, proj_dim=128, moco=moco_block(),
      augment=PAPER_PRETRAIN_AUGMENT, aug=aug_block(), knn=knn_block(),
      steps_per_dispatch=0,  # 0: auto (1 on CPU, 64 on accelerators)
      checkpoint_every_epochs=10, log_every_steps=50))


def b4b_block(**extra) -> ml_collections.ConfigDict:
  """B4B as published (``defenses.b4b``): coverage over ``projections`` × ``bits`` LSH
  buckets, noise σ = λ·(exp(ln(α/λ)·coverage%/β) − 1), per-account ``transform``."""
  return ml_collections.ConfigDict(dict(
      projections=20, bits=12, alpha=0.8, beta=80.0, lam=1e-6, transform="affine_shuffle_pad",
      pad_ratio=1.0, binary_ratio=1.0, **extra))


def defense_block() -> ml_collections.ConfigDict:
  """The provider's defense (§VII), applied to every answer of the API: ``none``, ``topk``
  (k), ``round`` (decimals), ``noise`` (gaussian|uniform, scale), ``poison`` (Eq. 10: epsilon,
  norm l2|linf, PGD steps and step_size (0 = 2.5·ε/steps); its shadow stolen encoder is
  trained on ``shadow.dataset`` — default: the target's pretraining set — with the
  attacker's steal settings, for ``shadow.epochs`` at ``shadow.batch_size`` (defaults: the
  attacker's)), ``b4b`` (B4B as published: ``b4b.projections``, ``bits``, ``alpha``,
  ``beta``, ``lam``, ``transform``, ``pad_ratio``, ``binary_ratio``), ``answer_watermark``
  (a secret trigger colour pulls answers toward a secret direction: ``watermark.seed`` (the key), ``strength``, ``low``/``high``
  (how far an image's mean colour leans toward the secret trigger colour))."""
  return ml_collections.ConfigDict(dict(
      name="none", k=50, decimals=2, noise="gaussian", scale=0.1,
      epsilon=1.0, norm="l2", steps=10, step_size=0.0, seed=0,
      b4b=b4b_block(),
      watermark=ml_collections.ConfigDict(dict(seed=0, strength=0.5, low=0.05, high=0.15)),
      shadow=ml_collections.ConfigDict(dict(
          dataset=config_dict.placeholder(str), split="train",
          num_examples=config_dict.placeholder(object), epochs=config_dict.placeholder(int),
          batch_size=config_dict.placeholder(int)))))


def base_config(job: str) -> ml_collections.ConfigDict:
  """Top-level keys every config has. ``seed`` seeds every stage; ``target_seed`` (if set)
  seeds the target's pretraining instead, so sweeps over seeds share one target.
  ``strict_stages``: a stage whose settings differ from one already in the workdir is an
  error instead of a new stage directory."""
  return ml_collections.ConfigDict(dict(job=job, seed=0,
                                        target_seed=config_dict.placeholder(int),
                                        multihost=False,
                                        coordinator_address=config_dict.placeholder(str),
                                        num_processes=config_dict.placeholder(int),
                                        process_id=config_dict.placeholder(int),
                                        compilation_cache=True,
                                        strict_stages=False, defense=defense_block()))


PAPER_STEAL_AUGMENT = "flip,jitter,grayscale"  # §V-A2: A without RandomResizedCrop


def steal_block() -> ml_collections.ConfigDict:
  """The paper's attack settings (§V-A2): ResNet-34 stolen encoder, surrogate = 5% of the
  target's pretraining set drawn from ImageNet at 32x32, A = flip + jitter + grayscale,
  d = ℓ2, λ = 20, e = 100, S = 64.

  Optimiser (the paper gives lr 1e-3 and no optimiser; its code: SGD, momentum 0.9, weight
  decay 5e-4, on a loss summed over the batch): SGD, momentum 0.9, weight decay 5e-4 at
  lr 0.064 on the batch-*mean* loss — the official step for ℓ2 at S = 64, with every
  distance given the same step (docs/results/paper_cpu.md: at scale=cpu, 3 seeds, it steals
  1.4–3.9 points better than Adam 1e-3, the earlier default, on both downstream sets).

  Defaults where the paper's text and its official code differ (reference notes):
  ``normalize_features=True`` (the code L2-normalises both feature vectors; with it, d is
  scale-free and λ = 20 balances L1 and L2 as in the released results), ``reduction='mean'``
  (the code sums over the batch; with Adam the two differ only through Adam's epsilon),
  ``bn_passes='separate'`` (the code's one BatchNorm pass per view).
  """
  # attack: a registered name (stolen_jax.attacks); its hyperparameters in steal.<name>.
  from stolen_jax import attacks  # Imported here: reading a config loads no JAX module.
  blocks = {a.name: ml_collections.ConfigDict(dict(a.params))
            for a in attacks.REGISTRY.values() if a.params}
  return ml_collections.ConfigDict(dict(
      attack=attacks.DEFAULT, **blocks, variant="stolenencoder",
      target=config_dict.placeholder(str),  # A checkpoint path, or http(s)://HOST:PORT of an API.
      api_key=config_dict.placeholder(str),  # For an HTTP target (or STOLEN_JAX_API_KEY).
      surrogate="tfds:imagenet_resized/32x32", surrogate_split="train",
      surrogate_size=config_dict.FieldReference(0.05, field_type=object),  # count or fraction
      data_dir=config_dict.placeholder(str), image_size=32,
      query_budget=config_dict.placeholder(int), query_batch_size=256,
      # Sybil accounts (steal/sybil.py): the surrogate split over ``sybils`` accounts, each
      # aligned to the first through ``sybil_mapping`` images both answer.
      sybils=1, sybil_mapping=500, api_keys=config_dict.placeholder(str),
      recover="none",  # auto: recognise the API's perturbation and undo it (steal/recover.py).
      price_per_1000=1.2,  # $ per 1,000 queries for the tables' cost (Clarifai's, §VI); an HTTP API bills its own.
      max_weights_gb=4.0,  # An import:NAME:PATH target's file may declare at most this much.
      arch="resnet34", width=1.0, dtype="float32",
      lambda_=20.0, distance="l2", reduction="mean", normalize_features=True,
      answer_scaling="none",  # standardize: per-dimension z-scores of the answers in the loss.
      bn_passes="separate", augment=PAPER_STEAL_AUGMENT, aug=aug_block(),
      epochs=100, batch_size=64,
      optimizer="sgd", lr=0.064, weight_decay=5e-4, momentum=0.9, schedule="constant",
      eval_heldout=1000, heldout_split="validation",
      steps_per_dispatch=0, checkpoint_every_epochs=10, log_every_steps=20))


PAPER_DOWNSTREAM = "tfds:gtsrb,tfds:mnist,tfds:fashion_mnist,tfds:svhn_cropped"


def probe_block() -> ml_collections.ConfigDict:
  """Downstream classifiers (§V-A3): MLP 512-256, Adam 1e-4, batch 256, 500 epochs, on
  GTSRB (the paper's default), MNIST, Fashion-MNIST and SVHN at 32x32."""
  return ml_collections.ConfigDict(dict(
      encoder=config_dict.placeholder(str), datasets=PAPER_DOWNSTREAM,
      train_split="train", test_split="test", data_dir=config_dict.placeholder(str),
      num_train=config_dict.placeholder(object), num_test=config_dict.placeholder(object),
      image_size=32, hidden=(512, 256), dropout=0.0,
      epochs=500, batch_size=256, optimizer="adam", lr=1e-4, weight_decay=0.0, momentum=0.9,
      schedule="constant", feature_batch_size=512,
      steps_per_dispatch=0, checkpoint_every_epochs=100))


def demo_config() -> ml_collections.ConfigDict:
  """The demo's whole attack on embedded data, sized for 2 CPU cores (``configs/demo.py``;
  the defense demos and the ``demo`` scale of ``configs/paper/`` start from it).

  Images are 16 px: on 2 cores a width-1/8 ResNet-18 step is ~3x faster than at 32 px,
  which buys the target and the steal enough steps to show the effect within minutes.
  The downstream sets differ from the pretraining set, as the paper's (GTSRB, MNIST, SVHN
  for a CIFAR-10 target) do.
  """
  config = base_config("pipeline")
  p = config.pretrain = pretrain_block()
  p.dataset, p.num_examples, p.image_size = "embedded:shapes", 4096, 16
  p.arch, p.width = "resnet18", 0.125
  p.epochs, p.batch_size = 15, 128
  p.aug.crop_scale = (0.25, 1.0)  # Small images: very small crops miss the shape entirely.
  p.knn.num_train, p.knn.num_test, p.knn.k, p.knn.every_epochs = 2000, 500, 20, 5
  p.checkpoint_every_epochs, p.log_every_steps = 5, 8

  s = config.steal = steal_block()
  # The demo was measured with Adam 1e-3 (the default before the scale=cpu study made SGD
  # the default); it keeps it until it is measured with SGD.
  s.optimizer, s.lr, s.weight_decay = "adam", 1e-3, 0.0
  s.surrogate, s.surrogate_split, s.heldout_split = "embedded:scenes", "train", "test"
  s.surrogate_size, s.image_size = 512, 16
  s.arch, s.width = "resnet18", 0.125
  s.epochs = 80
  s.eval_heldout = 500
  s.checkpoint_every_epochs, s.log_every_steps = 20, 8

  q = config.probe = probe_block()
  q.datasets = "embedded:glyphs,embedded:textures"
  q.num_train, q.num_test, q.image_size = 5000, 1000, 16
  q.epochs = 200
  q.lr = 1e-3  # 200 epochs instead of the paper's 500: a larger step to converge in time.
  return config


SCALES = ("paper", "cpu", "demo")


def scaled_config(scale: str) -> ml_collections.ConfigDict:
  """The base pipeline of the paper's experiments (``configs/paper/``) at one of three scales:

  * ``paper``: the paper's settings (§V-A): SimCLR ResNet-18 on CIFAR-10 for 1000 epochs,
    2,500 ImageNet-32 queries, ResNet-34 stolen, 100 epochs, probes of 500 epochs — a GPU/TPU.
  * ``cpu``: real 32-px data on 2 CPU cores: width-1/8 encoders, a 10k-image 10-epoch target,
    1,000 surrogate images (or the fraction), 30 steal epochs, probes on 10k/2k images for
    100 epochs. Datasets default to TFDS names; point them at files on the command line,
    e.g. ``--config.pretrain.dataset=npz:DIR/cifar10.npz``.
  * ``demo``: the embedded data of ``configs/demo.py`` (no download; minutes).
  """
  if scale not in SCALES:
    from stolen_jax.errors import ConfigError
    raise ConfigError(f"unknown scale {scale!r}; valid choices: {', '.join(SCALES)}")
  if scale == "demo":
    return demo_config()
  config = base_config("pipeline")
  config.pretrain = pretrain_block()
  config.steal = steal_block()
  config.probe = probe_block()
  if scale == "cpu":
    p, s, q = config.pretrain, config.steal, config.probe
    p.width, p.num_examples, p.epochs = 0.125, 10000, 10
    p.knn.num_train, p.knn.num_test, p.knn.every_epochs = 5000, 1000, 5
    s.width, s.surrogate_size, s.epochs = 0.125, 1000, 30
    s.heldout_split, s.eval_heldout = "test", 1000
    q.datasets = "tfds:mnist,tfds:cifar10"
    q.num_train, q.num_test, q.epochs, q.lr = 10000, 2000, 100, 1e-3
  return config


def serve_block() -> ml_collections.ConfigDict:
  """The HTTP API (``job='serve'``): which checkpoint, where, the ledger, and the admin
  actions (``action`` = serve | add_key | list_keys | revoke_key)."""
  return ml_collections.ConfigDict(dict(
      action="serve", checkpoint=config_dict.placeholder(str), host="127.0.0.1", port=8000,
      ledger=config_dict.placeholder(str),  # Default: <workdir>/ledger.sqlite
      # add_key: a budget in queries, or unlimited=True (never unlimited by omission).
      name="customer", budget=config_dict.placeholder(int), unlimited=False,
      price_per_1000=1.2, rate_per_s=0.0,
      batch_window_ms=5.0, max_batch=1024, max_body_mb=64, feature_batch_size=512,
      # Per request: declared pixels per image and in all (checked before decoding), and
      # an account limited to r images/s sends at most r * burst_s images at once.
      max_image_pixels=4096 * 4096, max_request_pixels=2 * 4096 * 4096, burst_s=1.0,
      max_weights_gb=4.0,  # An import:NAME:PATH checkpoint may declare at most this much.
      # B4B: per-account noise growing with the account's coverage of the embedding space.
      b4b=b4b_block(enabled=False, seed=0)))


def verify_block() -> ml_collections.ConfigDict:
  """``job='verify'``: is ``suspect`` stolen from ``victim`` (any target specs)? The victim's
  private training data (``private``: 'auto' reads what a victim trained here recorded) and a
  public held-out set of its distribution (``public``: 'auto' = the private dataset's
  ``public_split``); ``methods`` ('auto': every one that applies) at level ``alpha``;
  ``num_samples`` images per set, ``watermark_samples`` for the watermark tests; the suspect
  answers within ``suspect_budget`` queries (None: no limit)."""
  return ml_collections.ConfigDict(dict(
      victim=config_dict.placeholder(str), suspect=config_dict.placeholder(str),
      methods="auto", alpha=0.01, private="auto", private_split="train",
      private_num_examples=config_dict.placeholder(object), public="auto", public_split="test",
      num_samples=1000, watermark_samples=200, watermark_tint=0.25, permutations=9999,
      suspect_budget=config_dict.placeholder(int), seed=0, batch_size=512, image_size=32,
      data_dir=config_dict.placeholder(str), api_key=config_dict.placeholder(str),
      max_weights_gb=4.0, watermark_seed=config_dict.placeholder(int),
      # In a pipeline (configs/paper/verification.py): verify each cell's stolen encoder and
      # the innocents (verify.study.parse_innocents) against its target.
      enabled=False, innocents="", innocent_surrogate_size=0,
      dataset_inference=ml_collections.ConfigDict(dict(components=50, reg_covar=1e-4))))


def watermark_block() -> ml_collections.ConfigDict:
  """``job='watermark'``: fine-tune ``victim`` to carry a secret watermark task (key
  ``seed``; the answer watermark's ``strength``, ``low``, ``high``) on its private data
  (recorded, or ``dataset``), with ``stamped_share`` of it tinted by ``tint`` toward the
  trigger colour (and as many away from it)."""
  return ml_collections.ConfigDict(dict(
      enabled=False,  # In a pipeline: serve (and steal from) the target watermarked.
      victim=config_dict.placeholder(str), seed=0, strength=0.5, low=0.05, high=0.15,
      tint=0.25, stamped_share=0.25, epochs=10, batch_size=128, lr=1e-4,
      dataset=config_dict.placeholder(str), split="train",
      num_examples=config_dict.placeholder(object), data_seed=0,
      data_dir=config_dict.placeholder(str)))


def prepare_block() -> ml_collections.ConfigDict:
  """``job='prepare'``: which distribution (``format``), where it is (``source``), the .npz
  to write (``output``), optional seeded subsets and a resize (``data/prepare.py``)."""
  return ml_collections.ConfigDict(dict(
      format="cifar10", source=config_dict.placeholder(str), output=config_dict.placeholder(str),
      max_train=config_dict.placeholder(int), max_test=config_dict.placeholder(int), seed=0,
      image_size=config_dict.placeholder(int)))


# The attacker's recipe against a real ImageNet-scale target, chosen by the cost-frontier
# study (configs/paper/realworld_frontier.py, docs/results/realworld.md; measured against
# EfficientNet-Lite0 with 2 seeds): Adam 1e-3 beat the paper code's SGD by 4-13 points of
# SA/TA at equal minutes, ℓ2-normalised answers beat raw and z-scored ones, width 1/4 lost
# 7-19 points, full width and ResNet-34 gained nothing measurable for 1.8-2.9x the minutes,
# 3x the epochs did not move CIFAR-10. The number of queries is the attacker's budget, not
# part of the recipe.
REAL_TARGET_RECIPE = dict(arch="resnet18", width=0.5, image_size=32, epochs=30, batch_size=64,
                          optimizer="adam", lr=1e-3, weight_decay=0.0, normalize_features=True,
                          answer_scaling="none", attack="stolenencoder")


def realworld_config(target: str, queries: int = 2500) -> ml_collections.ConfigDict:
  """Table XI's pipeline against a published encoder ``target`` (``import:NAME:PATH``): the
  tuned real-target recipe (``REAL_TARGET_RECIPE``) with ``queries`` surrogate images."""
  config = base_config("pipeline")
  config.pretrain = pretrain_block()  # Unused: the target is given.
  s = config.steal = steal_block()
  s.update(REAL_TARGET_RECIPE)
  s.target, s.surrogate_size, s.query_batch_size = target, queries, 64
  config.probe = probe_block()
  config.probe.image_size = s.image_size
  return config
