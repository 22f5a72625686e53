"""ZFNet (Zeiler & Fergus, Visualizing and Understanding Convolutional Networks, arXiv:1311.2901).

- `zfnet`: the paper's Figure 3: 7x7/2 conv1 (AlexNet's 11x11/4 made finer after looking at the
  filters), 5x5/2 conv2, dense (not split) conv3-5, pooling then contrast normalisation. The figure's
  volumes 224 -> 110 -> 55 -> 26 -> 13 -> 13 -> 13 -> 6 come out with conv1 padding 1 (PyTorch floors
  (224 - 7 + 2)/2 + 1 = 110.5 to 110, one input row and column unseen) and pool1/pool2 rounding up as
  Caffe did (ceil_mode). The normalisation is modelled with AlexNet's LRN constants.
- `zfnet-b`: the paper's variant (b) of Table 2: conv3/4/5 with 512/1024/512 filters.
- `zfnet-lecture`: the lecture's ZFNet: its unpadded 227-pixel AlexNet with a 7x7 conv1 (stride 4 kept)
  and 512/1024/512 filters in conv3-5.
"""

from __future__ import annotations

import dataclasses

from ..spec import LRN, Conv, MaxPool, ModelInfo, Network, ReLU
from .parts import fc_head
from .registry import get_spec, register

YEAR = 2013
PAPER = "Zeiler & Fergus, Visualizing and Understanding Convolutional Networks, arXiv:1311.2901"


def _zfnet(name: str, filters: tuple[int, int, int], title: str, result: str) -> Network:
    c3, c4, c5 = filters
    lrn = dict(size=5, alpha=1e-4, beta=0.75, k=2.0)
    return Network(
        name,
        (3, 224, 224),
        (
            Conv("conv1", 96, 7, stride=2, padding=1),
            ReLU("relu1"),
            MaxPool("pool1", 3, 2, ceil_mode=True),
            LRN("norm1", **lrn),
            Conv("conv2", 256, 5, stride=2),
            ReLU("relu2"),
            MaxPool("pool2", 3, 2, ceil_mode=True),
            LRN("norm2", **lrn),
            Conv("conv3", c3, 3, padding=1),
            ReLU("relu3"),
            Conv("conv4", c4, 3, padding=1),
            ReLU("relu4"),
            Conv("conv5", c5, 3, padding=1),
            ReLU("relu5"),
            MaxPool("pool5", 3, 2),
            *fc_head(),
        ),  # fmt: skip
        ModelInfo(title=title, year=2013, paper=PAPER, result=result),
    )


@register("zfnet")
def zfnet() -> Network:
    return _zfnet(
        "zfnet",
        (384, 384, 256),
        "ZFNet, the paper's Figure 3 net",
        "ILSVRC-2013: 11.7% top-5 test (Clarifai); 1 net 38.4/16.5 top-1/top-5 val",
    )


@register("zfnet-b")
def zfnet_b() -> Network:
    return _zfnet(
        "zfnet-b",
        (512, 1024, 512),
        "ZFNet variant (b): bigger conv3-5 (512/1024/512)",
        "1 net 37.5/16.0 top-1/top-5 val (paper, Table 2)",
    )


@register("zfnet-lecture")
def zfnet_lecture() -> Network:
    base = get_spec("alexnet-lecture")
    changes = {"conv1": {"kernel": 7}, "conv3": {"out_channels": 512},
               "conv4": {"out_channels": 1024}, "conv5": {"out_channels": 512}}  # fmt: skip
    layers = tuple(
        dataclasses.replace(layer, **changes[layer.name]) if layer.name in changes else layer
        for layer in base.layers
    )
    return Network(
        "zfnet-lecture",
        base.input_shape,
        layers,
        ModelInfo(
            title="ZFNet as the lecture sets it against its AlexNet (7x7 conv1, 512/1024/512)",
            year=2013,
            paper="Khapra, CS7015 Lecture 11 (after " + PAPER + ")",
            result="ILSVRC-2013: Clarifai (ZFNet-based) 11.7% top-5 test error",
            notes="The lecture's AlexNet with conv1 7x7 (stride 4) and conv3/4/5 of 512/1024/512.",
        ),
    )
