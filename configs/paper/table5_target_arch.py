"""Table V: the target encoder's architecture (the stolen encoder stays ResNet-34).

Run: python -m stolen_jax.main --config=configs/paper/table5_target_arch.py:demo
(``:cpu`` with the datasets named on the command line as in fig2_lambda.py).
Paper (Table V, CIFAR-10, GTSRB TA/SA): ResNet34 76.58/76.76, VGG19_bn 42.68/48.52, VGG19
26.88/41.69, ResNet18 80.67/79.43, DenseNet121 59.78/61.69, MobileNetV2 38.75/47.26,
ShuffleNetV2 45.60/49.79: SA is close to or above TA for every target architecture.
"""

from stolen_jax import defaults, sweep


def get_config(scale="demo"):
  config = defaults.scaled_config(scale)
  config.job = "sweep"
  config.steal.arch = "resnet34"
  config.sweep = sweep.sweep_block()
  config.sweep.axes = ("pretrain.arch=resnet34,vgg19_bn,vgg19,resnet18,densenet121,mobilenetv2,"
                       "shufflenetv2")
  config.sweep.paper = ("resnet34:76.58/76.76; vgg19_bn:42.68/48.52; vgg19:26.88/41.69; "
                        "resnet18:80.67/79.43; densenet121:59.78/61.69; mobilenetv2:38.75/47.26; "
                        "shufflenetv2:45.60/49.79")
  config.sweep.note = "paper: Table V (CIFAR-10 target, GTSRB downstream)."
  return config
