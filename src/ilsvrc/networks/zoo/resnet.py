"""ResNet (He, Zhang, Ren, Sun, Deep Residual Learning for Image Recognition, arXiv:1512.03385), the
ILSVRC-2015 winner, and the paper's plain networks.

Every network is a stem (7x7/2 convolution, batch norm, ReLU, 3x3/2 max pooling), four stages
`layer1`..`layer4` of blocks, global average pooling and one fully connected layer. A block is
relu(body(x) + shortcut(x)): the body is two 3x3 convolutions (basic block, ResNet-18/34) or 1x1, 3x3,
1x1 with four times the channels out (bottleneck, ResNet-50/101/152), each followed by batch norm; the
shortcut is the identity, or a 1x1 convolution and batch norm where the block changes the volume (the
paper's option B). `STAGES` is the paper's Table 1: blocks per stage.

In the spec a block is `layerS.i` (a Block holding the Residual `add` and the ReLU after the sum), so
the tables show rows named as torchvision names its modules: `layer3.4`.

- `resnet18` ... `resnet152`: as torchvision builds them, "v1.5": a bottleneck that halves the size
  does it in its 3x3 convolution.
- `resnet50-v1`, `resnet101-v1`, `resnet152-v1`: as the paper (and its Caffe models) do, with the
  stride in the bottleneck's first 1x1 convolution: the same parameters, fewer multiply-adds.
- `plain18`, `plain34`: the paper's networks without shortcuts (its degradation experiment: plain-34
  has a higher training error than plain-18, while ResNet-34 is better than ResNet-18).
"""

from __future__ import annotations

from functools import partial

from ..spec import (
    AdaptiveAvgPool,
    BatchNorm,
    Block,
    Conv,
    Flatten,
    Layer,
    Linear,
    MaxPool,
    ModelInfo,
    Network,
    ReLU,
    Residual,
)
from .registry import register

YEAR = 2015
PAPER = "He, Zhang, Ren & Sun, Deep Residual Learning for Image Recognition, arXiv:1512.03385"
WINNER = "ILSVRC-2015 winner: 3.57% top-5 test error (an ensemble)"

# depth -> (block kind, blocks per stage): the paper's Table 1
STAGES: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
RESULTS = {
    18: "ResNet-18: 27.88% top-1 val error, 10-crop (paper, Table 2; plain-18: 27.94%)",
    34: "ResNet-34: 25.03% top-1 val error, 10-crop (paper, Table 2; plain-34: 28.54%)",
    50: "ResNet-50 (10-crop val): 22.85 / 6.71 top-1 / top-5 (paper, Table 3); " + WINNER,
    152: "ResNet-152 (single model val): 19.38 / 4.49 top-1 / top-5 (paper, Table 4); " + WINNER,
}


def conv_bn(n: int, filters: int, kernel: int, stride: int = 1) -> tuple[Layer, ...]:
    """convN (no bias: batch norm follows) and bnN."""
    return (
        Conv(f"conv{n}", filters, kernel, stride=stride, padding=kernel // 2, bias=False),
        BatchNorm(f"bn{n}"),
    )


def block(name: str, kind: str, width: int, stride: int, in_channels: int, stride_first: bool,
          shortcut: bool = True) -> tuple[Block, int]:  # fmt: skip
    """One block and the channels it gives. `stride_first`: the paper's v1 bottleneck (stride on the
    first 1x1 convolution) instead of torchvision's v1.5 (stride on the 3x3)."""
    if kind == "basic":
        out = width
        body = (*conv_bn(1, width, 3, stride), ReLU("relu1"), *conv_bn(2, width, 3))
    else:
        out = 4 * width
        s1, s2 = (stride, 1) if stride_first else (1, stride)
        body = (*conv_bn(1, width, 1, s1), ReLU("relu1"), *conv_bn(2, width, 3, s2), ReLU("relu2"),
                *conv_bn(3, out, 1))  # fmt: skip
    if not shortcut:  # a plain network: the same layers, no sum
        return Block(name, (*body, ReLU("relu"))), out
    project = stride != 1 or in_channels != out
    down = (
        Block("downsample", (Conv("conv", out, 1, stride=stride, bias=False), BatchNorm("bn")))
        if project
        else None
    )
    return Block(name, (Residual("add", Block("body", body), down), ReLU("relu"))), out


def resnet_layers(depth: int, stride_first: bool = False, shortcuts: bool = True) -> tuple[Layer, ...]:
    kind, counts = STAGES[depth]
    layers: list[Layer] = [*conv_bn(1, 64, 7, 2), ReLU("relu"), MaxPool("maxpool", 3, 2, padding=1)]
    channels = 64
    for stage, (count, width) in enumerate(zip(counts, (64, 128, 256, 512)), start=1):
        blocks = []
        for i in range(count):
            stride = 2 if i == 0 and stage > 1 else 1
            b, channels = block(str(i), kind, width, stride, channels, stride_first, shortcuts)
            blocks.append(b)
        layers.append(Block(f"layer{stage}", tuple(blocks)))
    return (*layers, AdaptiveAvgPool("avgpool", 1), Flatten("flatten"), Linear("fc", 1000))


def resnet(depth: int, variant: str = "v1.5") -> Network:
    v1 = variant == "v1"
    name = f"resnet{depth}" + ("-v1" if v1 else "")
    how = "the paper's v1: stride in the first 1x1" if v1 else "torchvision's v1.5: stride in the 3x3"
    kind = STAGES[depth][0]
    return Network(
        name,
        (3, 224, 224),
        resnet_layers(depth, stride_first=v1),
        ModelInfo(
            title=f"ResNet-{depth}, {kind} blocks" + (f" ({how})" if kind == "bottleneck" else ""),
            year=2015,
            paper=PAPER + ("" if v1 else "; torchvision"),
            result=RESULTS.get(depth, WINNER),
        ),
    )


def plain(depth: int) -> Network:
    return Network(
        f"plain{depth}",
        (3, 224, 224),
        resnet_layers(depth, shortcuts=False),
        ModelInfo(
            title=f"Plain-{depth}: ResNet-{depth} without its shortcuts (the paper's degradation experiment)",
            year=2015,
            paper=PAPER,
            result=f"plain-{depth}: {'27.94' if depth == 18 else '28.54'}% top-1 val error, 10-crop "
            "(paper, Table 2: deeper is worse without shortcuts)",
        ),
    )


for _depth in STAGES:
    register(f"resnet{_depth}")(partial(resnet, _depth))
for _depth in (50, 101, 152):
    register(f"resnet{_depth}-v1")(partial(resnet, _depth, "v1"))
for _depth in (18, 34):
    register(f"plain{_depth}")(partial(plain, _depth))
