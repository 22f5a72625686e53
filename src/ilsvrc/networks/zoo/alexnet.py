"""AlexNet (Krizhevsky, Sutskever, Hinton, NIPS 2012) and the two variants people meet most.

- `alexnet`: the paper's net. Two GPUs, so conv2, conv4 and conv5 see only the half of the previous
  layer that lives on their GPU (groups=2); conv3 and the FC layers connect across both. LRN after the
  ReLU of conv1 and conv2, overlapping 3x3/2 max pooling, dropout on the outputs of fc6 and fc7. The
  paper says 224x224 input, but its 55x55 after conv1 needs 227 with no padding: we use 227.
- `alexnet-lecture`: the lecture's walk-through: 227 input, no padding anywhere, one GPU, no LRN; the
  last pooling leaves 256x2x2, flattened to 1024.
- `alexnet-torchvision`: torchvision's single-GPU model (the "one weird trick" net): 64/192/384/256/256
  filters, padding 2 in conv1, adaptive average pooling to 6x6, dropout before fc6 and fc7.
"""

from __future__ import annotations

from ..spec import LRN, Conv, Flatten, Linear, MaxPool, ModelInfo, Network, ReLU
from ..spec import AdaptiveAvgPool as Adaptive
from .parts import fc_head
from .registry import register

YEAR = 2012  # the zoo lists families by year
PAPER = "Krizhevsky, Sutskever & Hinton, ImageNet Classification with Deep CNNs, NIPS 2012"


@register("alexnet")
def alexnet() -> Network:
    lrn = dict(size=5, alpha=1e-4, beta=0.75, k=2.0)
    return Network(
        "alexnet",
        (3, 227, 227),
        (
            Conv("conv1", 96, 11, stride=4),
            ReLU("relu1"),
            LRN("norm1", **lrn),
            MaxPool("pool1", 3, 2),
            Conv("conv2", 256, 5, padding=2, groups=2),
            ReLU("relu2"),
            LRN("norm2", **lrn),
            MaxPool("pool2", 3, 2),
            Conv("conv3", 384, 3, padding=1),
            ReLU("relu3"),
            Conv("conv4", 384, 3, padding=1, groups=2),
            ReLU("relu4"),
            Conv("conv5", 256, 3, padding=1, groups=2),
            ReLU("relu5"),
            MaxPool("pool5", 3, 2),
            *fc_head(),
        ),  # fmt: skip
        ModelInfo(
            title="AlexNet, as published (two-GPU split, LRN)",
            year=2012,
            paper=PAPER,
            result="ILSVRC-2012 winner: 16.4% top-5 test error (5 CNNs); 1 CNN 40.7/18.2 top-1/top-5 val",
            notes="Paper says 224x224; 227 makes conv1's 55x55 exact. groups=2 is the two-GPU split.",
        ),
    )


@register("alexnet-lecture")
def alexnet_lecture() -> Network:
    return Network(
        "alexnet-lecture",
        (3, 227, 227),
        (
            Conv("conv1", 96, 11, stride=4),
            ReLU("relu1"),
            MaxPool("pool1", 3, 2),
            Conv("conv2", 256, 5),
            ReLU("relu2"),
            MaxPool("pool2", 3, 2),
            Conv("conv3", 384, 3),
            ReLU("relu3"),
            Conv("conv4", 384, 3),
            ReLU("relu4"),
            Conv("conv5", 256, 3),
            ReLU("relu5"),
            MaxPool("pool5", 3, 2),
            Flatten("flatten"),
            Linear("fc6", 4096),
            ReLU("relu6"),
            Linear("fc7", 4096),
            ReLU("relu7"),
            Linear("fc8", 1000),
        ),  # fmt: skip
        ModelInfo(
            title="AlexNet as the lecture walks through it (no padding, 256x2x2 -> 1024)",
            year=2012,
            paper="Khapra, CS7015 Lecture 11 (after " + PAPER + ")",
            result="ILSVRC-2012 winner: 16.4% top-5 test error",
            notes="Teaching version: every conv unpadded, one GPU, no LRN or dropout.",
        ),
    )


@register("alexnet-torchvision")
def alexnet_torchvision() -> Network:
    return Network(
        "alexnet-torchvision",
        (3, 224, 224),
        (
            Conv("conv1", 64, 11, stride=4, padding=2),
            ReLU("relu1"),
            MaxPool("pool1", 3, 2),
            Conv("conv2", 192, 5, padding=2),
            ReLU("relu2"),
            MaxPool("pool2", 3, 2),
            Conv("conv3", 384, 3, padding=1),
            ReLU("relu3"),
            Conv("conv4", 256, 3, padding=1),
            ReLU("relu4"),
            Conv("conv5", 256, 3, padding=1),
            ReLU("relu5"),
            MaxPool("pool5", 3, 2),
            Adaptive("avgpool", 6),
            *fc_head(dropout_first=True),
        ),  # fmt: skip
        ModelInfo(
            title="AlexNet as torchvision ships it (single GPU, no LRN)",
            year=2014,
            paper="Krizhevsky, One weird trick for parallelizing CNNs, arXiv:1404.5997; torchvision",
            result="torchvision weights: 56.522 / 79.066 top-1 / top-5 accuracy (centre crop)",
        ),
    )
