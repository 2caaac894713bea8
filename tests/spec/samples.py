"""Study-file texts shared by the spec tests: the issue's optimizer example."""

import textwrap

# The optimizer -> LR range space of the issue (and of studies/optimizer.yaml).
OPTIMIZER_SPACE = """
optimizer:
  choices: [sgd, adam, adamw]
  when:
    sgd:
      lr: {type: float, low: 3.0e-3, high: 1.0e-1, log: true}
      momentum: {type: float, low: 0.8, high: 0.99}
    adam:
      lr: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}
    adamw:
      lr: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}
      weight_decay: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
"""

OPTIMIZER_STUDY = """\
description: Optimizer and its learning rate (PROTOCOL.md phase 4)
phase: optimizer
base: {model: mlp, dataset: digits, epochs: 20, batch_size: 300}
objective: {metric: val_acc, direction: maximize}
sampler: {name: tpe, seed: 0}
pruner: {name: median, n_warmup_steps: 5}
trials: 30
space:
""" + textwrap.indent(OPTIMIZER_SPACE.lstrip("\n"), "  ")
