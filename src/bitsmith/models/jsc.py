"""The JSC models of MASE's labs, as one ``seq_blocks`` Sequential.

Traced node names are therefore ``seq_blocks_0 ...``, the names existing config
files use. The trailing ReLU on the logits is how these models are defined
elsewhere; it is kept so configs and checkpoints line up.
"""

from __future__ import annotations

import math

from torch import nn

from bitsmith.errors import BitsmithError
from bitsmith.models.registry import register_model


class SeqModel(nn.Module):
    """A model whose layers are the Sequential ``seq_blocks``."""

    def __init__(self, *layers: nn.Module):
        super().__init__()
        self.seq_blocks = nn.Sequential(*layers)

    def forward(self, x):
        return self.seq_blocks(x)


def _features(in_shape: tuple[int, ...], model: str) -> int:
    if len(in_shape) != 1:
        raise BitsmithError(f"model {model} takes flat feature rows, but the data set gives shape "
                            f"{in_shape}; pick a flat data set (e.g. digits, jsc)")
    return int(math.prod(in_shape))


@register_model("jsc-tiny", description="MASE lab: BatchNorm, ReLU, Linear features-classes, ReLU")
def jsc_tiny(in_shape, n_classes):
    f = _features(in_shape, "jsc-tiny")
    return SeqModel(nn.BatchNorm1d(f), nn.ReLU(), nn.Linear(f, n_classes), nn.ReLU())


@register_model("jsc-toy", description="MASE lab: BatchNorm, ReLU, Linear features-8-8-classes, "
                                      "each followed by BatchNorm and ReLU")
def jsc_toy(in_shape, n_classes):
    f = _features(in_shape, "jsc-toy")
    return SeqModel(
        nn.BatchNorm1d(f), nn.ReLU(),
        nn.Linear(f, 8), nn.BatchNorm1d(8), nn.ReLU(),
        nn.Linear(8, 8), nn.BatchNorm1d(8), nn.ReLU(),
        nn.Linear(8, n_classes), nn.BatchNorm1d(n_classes), nn.ReLU(),
    )


@register_model("jsc-three-linear-layers",
                description="MASE lab: BatchNorm, ReLU, Linear features-16-16-classes, each followed by ReLU")
def jsc_three_linear_layers(in_shape, n_classes):
    f = _features(in_shape, "jsc-three-linear-layers")
    return SeqModel(
        nn.BatchNorm1d(f), nn.ReLU(),
        nn.Linear(f, 16), nn.ReLU(),
        nn.Linear(16, 16), nn.ReLU(),
        nn.Linear(16, n_classes), nn.ReLU(),
    )


@register_model("jsc-s", description="MASE lab: BatchNorm, ReLU, Linear features-64-32-32-classes, "
                                    "each followed by BatchNorm and ReLU")
def jsc_s(in_shape, n_classes):
    f = _features(in_shape, "jsc-s")
    widths = (f, 64, 32, 32)
    layers: list[nn.Module] = [nn.BatchNorm1d(f), nn.ReLU()]
    for a, b in zip(widths, (*widths[1:], n_classes)):
        layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU()]
    return SeqModel(*layers)
