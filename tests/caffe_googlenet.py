"""Writes tests/data/caffe/googlenet_train_val.prototxt: GoogLeNet as a Caffe train_val file, in the
style (layer names, data layers per phase, side classifiers with loss_weight 0.3, accuracy layers in
TEST) of the BVLC replica, from the paper's Table 1 below. Run `python tests/caffe_googlenet.py` to
write it again; tests/test_caffe.py checks the file is what this script writes.
"""

from __future__ import annotations

from pathlib import Path

PATH = Path(__file__).parent / "data" / "caffe" / "googlenet_train_val.prototxt"

# the paper's Table 1: module -> #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj
TABLE = """
3a  64 96 128 16 32 32
3b  128 128 192 32 96 64
pool3
4a  192 96 208 16 48 64
loss1
4b  160 112 224 24 64 64
4c  128 128 256 24 64 64
4d  112 144 288 32 64 64
loss2
4e  256 160 320 32 128 128
pool4
5a  256 160 320 32 128 128
5b  384 192 384 48 128 128
"""


def layer(name: str, kind: str, bottoms: list[str], tops: list[str], body: str = "") -> str:
    lines = [f'  name: "{name}"', f'  type: "{kind}"']
    lines += [f'  bottom: "{b}"' for b in bottoms] + [f'  top: "{t}"' for t in tops]
    lines += [f"  {line}" for line in body.strip().splitlines()] if body.strip() else []
    return "layer {\n" + "\n".join(lines) + "\n}\n"


def conv(name: str, bottom: str, filters: int, kernel: int, stride: int = 1, relu: str = "") -> str:
    pad = f" pad: {kernel // 2}" if kernel > 1 else ""
    step = f" stride: {stride}" if stride > 1 else ""
    param = (
        "param { lr_mult: 1 decay_mult: 1 }\nparam { lr_mult: 2 decay_mult: 0 }\n"
        f"convolution_param {{\n  num_output: {filters}{pad} kernel_size: {kernel}{step}\n"
        '  weight_filler { type: "xavier" }\n  bias_filler { type: "constant" value: 0.2 }\n}'
    )
    out = layer(name, "Convolution", [bottom], [name], param)
    return out + (layer(relu, "ReLU", [name], [name]) if relu else "")


def pool(name: str, bottom: str, kind: str, kernel: int, stride: int, pad: int = 0) -> str:
    padding = f" pad: {pad}" if pad else ""
    return layer(
        name,
        "Pooling",
        [bottom],
        [name],
        f"pooling_param {{ pool: {kind} kernel_size: {kernel} stride: {stride}{padding} }}",
    )


def lrn(name: str, bottom: str) -> str:
    return layer(name, "LRN", [bottom], [name], "lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 }")


def fc(name: str, bottom: str, outputs: int) -> str:
    return layer(name, "InnerProduct", [bottom], [name], f"inner_product_param {{ num_output: {outputs} }}")


def heads(prefix: str, logits: str, weight: float, accuracy: str) -> str:
    out = layer(
        f"{prefix}/loss{'' if prefix != 'loss3' else '3'}",
        "SoftmaxWithLoss",
        [logits, "label"],
        [f"{prefix}/loss{'' if prefix != 'loss3' else '3'}"],
        f"loss_weight: {weight:g}",
    )
    for k in (1, 5):
        top_k = "accuracy_param { top_k: 5 }\n" if k == 5 else ""
        out += layer(
            f"{prefix}/top-{k}",
            "Accuracy",
            [logits, "label"],
            [f"{prefix}/top-{k}"],
            top_k + f"include {{ phase: {accuracy} }}",
        )
    return out


def data(phase: str, batch: int, mirror: bool) -> str:
    return layer(
        "data",
        "Data",
        [],
        ["data", "label"],
        f"""
include {{ phase: {phase} }}
transform_param {{
  mirror: {str(mirror).lower()}
  crop_size: 224
  mean_value: 104
  mean_value: 117
  mean_value: 123
}}
data_param {{
  source: "examples/imagenet/ilsvrc12_{phase.lower()}_lmdb"
  batch_size: {batch}
  backend: LMDB
}}""",
    )


def inception(module: str, bottom: str, n: list[int]) -> tuple[str, str]:
    p = f"inception_{module}"
    n1, r3, n3, r5, n5, proj = n
    text = conv(f"{p}/1x1", bottom, n1, 1, relu=f"{p}/relu_1x1")
    text += conv(f"{p}/3x3_reduce", bottom, r3, 1, relu=f"{p}/relu_3x3_reduce")
    text += conv(f"{p}/3x3", f"{p}/3x3_reduce", n3, 3, relu=f"{p}/relu_3x3")
    text += conv(f"{p}/5x5_reduce", bottom, r5, 1, relu=f"{p}/relu_5x5_reduce")
    text += conv(f"{p}/5x5", f"{p}/5x5_reduce", n5, 5, relu=f"{p}/relu_5x5")
    text += pool(f"{p}/pool", bottom, "MAX", 3, 1, pad=1)
    text += conv(f"{p}/pool_proj", f"{p}/pool", proj, 1, relu=f"{p}/relu_pool_proj")
    branches = [f"{p}/1x1", f"{p}/3x3", f"{p}/5x5", f"{p}/pool_proj"]
    return text + layer(f"{p}/output", "Concat", branches, [f"{p}/output"]), f"{p}/output"


def side(prefix: str, bottom: str) -> str:
    text = pool(f"{prefix}/ave_pool", bottom, "AVE", 5, 3)
    text += conv(f"{prefix}/conv", f"{prefix}/ave_pool", 128, 1, relu=f"{prefix}/relu_conv")
    text += fc(f"{prefix}/fc", f"{prefix}/conv", 1024) + layer(
        f"{prefix}/relu_fc", "ReLU", [f"{prefix}/fc"], [f"{prefix}/fc"]
    )
    text += layer(
        f"{prefix}/drop_fc",
        "Dropout",
        [f"{prefix}/fc"],
        [f"{prefix}/fc"],
        "dropout_param { dropout_ratio: 0.7 }",
    )
    text += fc(f"{prefix}/classifier", f"{prefix}/fc", 1000)
    return text + heads(prefix, f"{prefix}/classifier", 0.3, "TEST")


def prototxt() -> str:
    text = (
        "# GoogLeNet (Szegedy et al. 2014) as a Caffe train_val file; written by tests/caffe_googlenet.py\n"
    )
    text += 'name: "GoogleNet"\n' + data("TRAIN", 32, True) + data("TEST", 50, False)
    text += conv("conv1/7x7_s2", "data", 64, 7, 2, relu="conv1/relu_7x7")
    text += pool("pool1/3x3_s2", "conv1/7x7_s2", "MAX", 3, 2) + lrn("pool1/norm1", "pool1/3x3_s2")
    text += conv("conv2/3x3_reduce", "pool1/norm1", 64, 1, relu="conv2/relu_3x3_reduce")
    text += conv("conv2/3x3", "conv2/3x3_reduce", 192, 3, relu="conv2/relu_3x3")
    text += lrn("conv2/norm2", "conv2/3x3") + pool("pool2/3x3_s2", "conv2/norm2", "MAX", 3, 2)
    at = "pool2/3x3_s2"
    for row in TABLE.split("\n"):
        word, *numbers = row.split() or [""]
        if word in ("pool3", "pool4"):
            text += pool(f"{word}/3x3_s2", at, "MAX", 3, 2)
            at = f"{word}/3x3_s2"
        elif word.startswith("loss"):
            text += side(word, at)
        elif word:
            more, at = inception(word, at, [int(x) for x in numbers])
            text += more
    text += pool("pool5/7x7_s1", at, "AVE", 7, 1)
    text += layer(
        "pool5/drop_7x7_s1",
        "Dropout",
        ["pool5/7x7_s1"],
        ["pool5/7x7_s1"],
        "dropout_param { dropout_ratio: 0.4 }",
    )
    text += fc("loss3/classifier", "pool5/7x7_s1", 1000)
    return text + heads("loss3", "loss3/classifier", 1, "TEST")


if __name__ == "__main__":
    PATH.write_text(prototxt())
    print(f"written: {PATH}")
