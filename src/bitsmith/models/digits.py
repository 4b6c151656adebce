"""Small models sized for the bundled digits set (64 features / 1x8x8, 10 classes)."""

from __future__ import annotations

from torch import nn

from bitsmith.errors import BitsmithError
from bitsmith.models.jsc import SeqModel, _features
from bitsmith.models.registry import register_model


@register_model("digits-mlp", description="MLP: Linear features-64-32-classes, ReLU between; any flat data set")
def digits_mlp(in_shape, n_classes):
    """64 -> 64 -> 32 -> classes, ReLU between (no activation on the logits)."""
    f = _features(in_shape, "digits-mlp")
    return SeqModel(
        nn.Linear(f, 64), nn.ReLU(),
        nn.Linear(64, 32), nn.ReLU(),
        nn.Linear(32, n_classes),
    )


@register_model("digits-cnn", description="CNN: two 3x3 conv blocks, global average pooling, one Linear; "
                                         "images (digits-image)")
def digits_cnn(in_shape, n_classes):
    """Two 3x3 conv blocks, global average pooling, one linear classifier.

    Global pooling keeps the classifier's input equal to the last conv's
    channels, so channel multipliers stay a per-layer affair.
    """
    if len(in_shape) != 3:
        raise BitsmithError(f"model digits-cnn takes images (C, H, W), but the data set gives shape "
                            f"{in_shape}; use the data set digits-image")
    c = in_shape[0]
    return SeqModel(
        nn.Conv2d(c, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(32, n_classes),
    )
