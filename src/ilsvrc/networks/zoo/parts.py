"""Pieces the families share."""

from __future__ import annotations

from ..spec import Dropout, Flatten, Layer, Linear, ReLU


def fc_head(dropout_first: bool = False, classes: int = 1000) -> tuple[Layer, ...]:
    """flatten, fc6-fc7 of 4096 with ReLU and dropout 0.5, fc8 to `classes`.

    The AlexNet paper, ZFNet and VGG drop the outputs of fc6 and fc7 (Caffe's order: fc, relu, drop);
    torchvision's AlexNet drops the inputs of fc6 and fc7 instead (`dropout_first`).
    """
    if dropout_first:
        body = (Dropout("drop6"), Linear("fc6", 4096), ReLU("relu6"),
                Dropout("drop7"), Linear("fc7", 4096), ReLU("relu7"))  # fmt: skip
    else:
        body = (Linear("fc6", 4096), ReLU("relu6"), Dropout("drop6"),
                Linear("fc7", 4096), ReLU("relu7"), Dropout("drop7"))  # fmt: skip
    return (Flatten("flatten"), *body, Linear("fc8", classes))
