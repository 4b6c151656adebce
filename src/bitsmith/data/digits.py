"""The handwritten-digits set bundled with scikit-learn: works offline.

1,797 real 8x8 images, 10 classes. ``digits`` gives flat 64-feature rows (for
MLPs), ``digits-image`` the same rows as 1x8x8 images (for CNNs).
"""

from __future__ import annotations

import numpy as np

from bitsmith.data._base import VAL_SIZE, DataSplits, cached, recipe, split_and_scale, to_splits
from bitsmith.data.registry import register_dataset

CLASS_NAMES = tuple(str(i) for i in range(10))


def _arrays(val_size: float):
    def build():
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x = bunch.data.astype(np.float32)
        return (split_and_scale(x, bunch.target.astype(np.int64), recipe(val_size), class_names=CLASS_NAMES),
                {"rows": int(len(x))})

    return cached("digits", "sklearn.datasets.load_digits", build, recipe(val_size))


@register_dataset("digits", reads_file=False,
                  description="1,797 8x8 handwritten digits as 64 features, 10 classes (bundled with scikit-learn)")
def load_digits_flat(data_path: str | None = None, val_size: float = VAL_SIZE) -> DataSplits:
    arrays, meta = _arrays(val_size)
    return to_splits("digits", arrays, (64,), CLASS_NAMES, "sklearn.datasets.load_digits", meta)


@register_dataset("digits-image", reads_file=False,
                  description="the same digits as 1x8x8 images, for CNNs (digits-cnn)")
def load_digits_image(data_path: str | None = None, val_size: float = VAL_SIZE) -> DataSplits:
    arrays, meta = _arrays(val_size)
    return to_splits("digits-image", arrays, (1, 8, 8), CLASS_NAMES, "sklearn.datasets.load_digits", meta)
