"""Evaluation protocols checked against hand computations on tiny networks, and the metrics by hand.

The tiny network: 3x8x8 -> conv 4@3x3 (6x6) -> ReLU -> 2x2/2 max pool (3x3x4) -> flatten (36) -> fc 6
-> ReLU -> dropout -> fc 5. No padding, so over a larger image its score map at (i, j) is the network
applied to the 8x8 window at (2i, 2j): the stride of the convolutional part is 1 * 2 = 2.
Checks run in float64 so that "equal" means equal to 1e-10.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ilsvrc import IlsvrcError, ShapeError
from ilsvrc.networks.spec import (
    AdaptiveAvgPool,
    Block,
    Conv,
    Dropout,
    Flatten,
    Linear,
    MaxPool,
    Network,
    ReLU,
)
from ilsvrc.nn import build, create_model
from ilsvrc.training.evaluate import (
    PROTOCOLS,
    EvalResult,
    EvaluationError,
    FullyConvolutional,
    Meter,
    dense_logits,
    eval_input_transform,
    evaluate,
    fully_convolutional,
    plot_confusion,
    predict_probs,
    ten_crop_logits,
)

TINY = Network(
    "tiny",
    (3, 8, 8),
    (
        Conv("conv1", 4, 3),
        ReLU("relu1"),
        MaxPool("pool1", 2),
        Flatten("flatten"),
        Linear("fc1", 6),
        ReLU("relu2"),
        Dropout("drop"),
        Linear("fc2", 5),
    ),
)

# VGG in miniature: padded 3x3 convs, 2x2 pools, FC-ReLU-dropout twice, FC; 16 -> 8 -> 4, fc1 kernel 4x4
TINY_VGG = Network(
    "tiny-vgg",
    (3, 16, 16),
    (
        Conv("conv1_1", 4, 3, padding=1),
        ReLU("relu1_1"),
        Conv("conv1_2", 4, 3, padding=1),
        ReLU("relu1_2"),
        MaxPool("pool1", 2, 2),
        Conv("conv2_1", 8, 3, padding=1),
        ReLU("relu2_1"),
        MaxPool("pool2", 2, 2),
        Flatten("flatten"),
        Linear("fc6", 16),
        ReLU("relu6"),
        Dropout("drop6"),
        Linear("fc7", 16),
        ReLU("relu7"),
        Dropout("drop7"),
        Linear("fc8", 7),
    ),
)


def tiny(spec: Network = TINY, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build(spec).double().eval()


def images(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-10) -> bool:
    return a.shape == b.shape and bool((a - b).abs().max() <= tol)


# ---------------------------------------------------------------------------------------------------
# Ten crops


def test_ten_crops_are_the_four_corners_the_centre_and_their_flips():
    model = tiny()
    x = images(2, 3, 11, 12)  # crop 8: corners at rows 0/3, columns 0/4
    top, left = 2, 2  # centre: round((11 - 8) / 2) = round(1.5) = 2, round((12 - 8) / 2) = 2
    windows = [(0, 0), (0, 4), (3, 0), (3, 4), (top, left)]
    with torch.inference_mode():
        got = ten_crop_logits(model, x, 8)
        probs = predict_probs(model, x, "10crop", crop=8)
        assert got.shape == (2, 10, 5)
        for n in range(2):
            crops = [x[n, :, y : y + 8, c : c + 8] for y, c in windows]
            crops += [torch.flip(crop, dims=[2]) for crop in crops]  # left-right mirror of each crop
            hand = torch.stack([model(crop[None])[0] for crop in crops])  # one crop at a time
            assert close(got[n], hand)
            assert close(probs[n], torch.softmax(hand, dim=1).mean(0))  # softmax of each, averaged
    assert close(probs.sum(1), torch.ones(2, dtype=torch.float64))


def test_ten_crops_keep_channels_last_and_refuse_small_images():
    model = tiny()
    x = images(3, 3, 10, 10)
    with torch.inference_mode():
        plain = ten_crop_logits(model, x, 8)
        fast = ten_crop_logits(model, x.contiguous(memory_format=torch.channels_last), 8)
    assert close(plain, fast)
    with pytest.raises(ShapeError, match="at least"):
        ten_crop_logits(model, images(1, 3, 7, 9), 8)


# ---------------------------------------------------------------------------------------------------
# Fully connected layers as convolutions


@pytest.mark.parametrize("spec", [TINY, TINY_VGG], ids=["tiny", "tiny-vgg"])
def test_fully_convolutional_equals_the_model_at_the_training_size(spec):
    model = tiny(spec)
    net = fully_convolutional(model)
    assert isinstance(net, FullyConvolutional)
    assert "flatten" not in dict(net.named_children())
    x = images(4, *spec.input_shape)
    with torch.inference_mode():
        scores = net(x)
        assert scores.shape == (4, spec.layers[-1].out_features, 1, 1)
        assert close(scores.flatten(1), model(x))


def test_fully_convolutional_shares_the_models_modules_and_weights():
    model = tiny(TINY_VGG)
    net = fully_convolutional(model)
    assert net.conv1_1 is model.conv1_1 and net.drop6 is model.drop6
    # fc6 received 8x4x4 at 16x16: a 4x4 convolution; fc7 and fc8 are 1x1 convolutions
    assert isinstance(net.fc6, nn.Conv2d) and net.fc6.kernel_size == (4, 4) and net.fc6.in_channels == 8
    assert net.fc7.kernel_size == (1, 1) and net.fc8.kernel_size == (1, 1)
    assert net.fc6.weight.data_ptr() == model.fc6.weight.data_ptr()  # a view, not a copy
    assert torch.equal(net.fc6.weight.flatten(1), model.fc6.weight)  # exact: the same memory
    assert net.stride == (4, 4) and net.kernel == (4, 4)


def test_alexnet_torchvision_drops_its_adaptive_pool_and_agrees_at_224():
    torch.manual_seed(0)
    model = create_model("alexnet-torchvision", num_classes=10).eval()
    net = fully_convolutional(model)
    assert "avgpool" not in dict(net.named_children())  # 6x6 -> 6x6 at 224: the identity
    assert net.fc6.kernel_size == (6, 6) and net.stride == (32, 32)
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        expected = model(x)
        assert torch.allclose(net(x).flatten(1), expected, atol=1e-5, rtol=1e-4)
        assert net(torch.randn(1, 3, 256, 288)).shape == (1, 10, 2, 3)  # 7x8 after pool5 -> 2x3


def test_the_score_map_at_i_j_is_the_model_on_the_window_at_stride_times_i_j():
    model = tiny()
    net = fully_convolutional(model)
    assert net.stride == (2, 2)
    x = images(2, 3, 14, 13)  # conv 12x11, pool 6x5, fc1 3x3 kernel: a 4 x 3 score map
    with torch.inference_mode():
        scores = net(x)
        assert scores.shape == (2, 5, 4, 3)
        for i in range(4):
            for j in range(3):
                window = x[:, :, 2 * i : 2 * i + 8, 2 * j : 2 * j + 8]
                assert close(scores[:, :, i, j], model(window))


def test_fully_convolutional_refuses_what_it_cannot_slide():
    no_head = Network("convs", (3, 8, 8), (Conv("conv1", 4, 3), ReLU("relu1")))
    with pytest.raises(EvaluationError, match="no top-level flatten"):
        fully_convolutional(build(no_head))
    flatten_only = Network("flat", (3, 8, 8), (Conv("conv1", 4, 3), Flatten("flatten")))
    with pytest.raises(EvaluationError, match="no fully connected layer"):
        fully_convolutional(build(flatten_only))
    branched = Network(
        "branched",
        (3, 8, 8),
        (
            Conv("conv1", 4, 3),
            Flatten("flatten"),
            Block("head", (Linear("fc1", 6), ReLU("r"))),
            Linear("fc2", 3),
        ),
    )
    with pytest.raises(EvaluationError, match=r"head \(block\)"):
        fully_convolutional(build(branched))
    nested = Network("nested", (3, 8, 8), (Block("all", (Conv("conv1", 4, 3), Flatten("flatten"))),
                                           Linear("fc", 3)))  # fmt: skip
    with pytest.raises(EvaluationError, match="inside a block"):
        fully_convolutional(build(nested))
    with pytest.raises(IlsvrcError, match="built by ilsvrc"):
        fully_convolutional(nn.Sequential(nn.Flatten(), nn.Linear(3, 2)))
    # an adaptive pool that resizes at the training size (6x6 -> 2x2) cannot become a sliding window
    pooled = Network("pooled", (3, 8, 8), (Conv("conv1", 4, 3), AdaptiveAvgPool("avgpool", 2),
                                           Flatten("flatten"), Linear("fc", 3)))  # fmt: skip
    with pytest.raises(EvaluationError, match="avgpool pools a 6x6x4 volume to 2x2x4"):
        fully_convolutional(build(pooled))
    # ...but where it is the identity (4x4 -> 2x2 conv -> 2x2) it is dropped and the nets agree
    identity = Network("identity", (3, 4, 4), (Conv("conv1", 4, 3), AdaptiveAvgPool("avgpool", 2),
                                               Flatten("flatten"), Linear("fc", 3)))  # fmt: skip
    model = tiny(identity)
    net = fully_convolutional(model)
    x = images(2, 3, 4, 4)
    with torch.inference_mode():
        assert close(net(x).flatten(1), model(x))
        with pytest.raises(ShapeError, match="smaller than the 4x4"):
            net(images(1, 3, 3, 3))


# ---------------------------------------------------------------------------------------------------
# Dense evaluation


def window_probs(model: nn.Module, image: torch.Tensor) -> torch.Tensor:
    """Softmax of the tiny model on every 8x8 window at stride 2, averaged over the windows."""
    h, w = image.shape[-2:]
    probs = [
        torch.softmax(model(image[:, :, y : y + 8, x : x + 8]), dim=1)
        for y in range(0, h - 8 + 1, 2)
        for x in range(0, w - 8 + 1, 2)
    ]
    return torch.stack(probs).mean(0)


def test_dense_over_two_scales_and_flips_is_the_hand_averaged_spatial_softmax():
    model = tiny()
    x = images(3, 3, 12, 12)
    with torch.inference_mode():
        views = []
        for q in (10, 12):  # shorter side Q: 12 is the images' own size (no resize)
            scaled = x if q == 12 else F.interpolate(x, size=(q, q), mode="bilinear", antialias=True)
            views += [window_probs(model, scaled), window_probs(model, scaled.flip(-1))]
        hand = torch.stack(views).mean(0)  # equal weight per scale and flip, not per position
        got = predict_probs(model, x, "dense", crop=8, scales=(10, 12))
        assert close(got, hand)
        assert close(got.sum(1), torch.ones(3, dtype=torch.float64))
        no_flips = predict_probs(model, x, "dense", crop=8, scales=(12,), flips=False)
        assert close(no_flips, window_probs(model, x))
        # the default scale is the crop: 12x12 images resized to 8x8, one window
        small = F.interpolate(x, size=(8, 8), mode="bilinear", antialias=True)
        assert close(predict_probs(model, x, "dense", crop=8, flips=False), torch.softmax(model(small), 1))


def test_dense_logits_are_the_log_of_the_mean_posterior():
    model = tiny()
    x = images(2, 3, 12, 10)
    with torch.inference_mode():
        logits = dense_logits(model, x)
        assert close(logits.exp(), window_probs(model, x))
        assert close(torch.softmax(logits, 1), window_probs(model, x))


def test_predict_probs_restores_modes_and_checks_its_input():
    model = tiny()
    model.train()
    model.drop.eval()  # a submodule's own mode survives too
    x = images(2, 3, 8, 8)
    first = predict_probs(model, x, "center", crop=8)
    assert close(first, predict_probs(model, x, "center", crop=8))  # dropout was off both times
    assert model.training and model.conv1.training and not model.drop.training
    with pytest.raises(ShapeError, match="centre-cropped to 8x8"):
        predict_probs(model, images(2, 3, 10, 10), "center", crop=8)
    with pytest.raises(EvaluationError, match="Unknown evaluation protocol"):
        predict_probs(model, x, "five-crop", crop=8)


# ---------------------------------------------------------------------------------------------------
# Metrics


def test_meter_counts_top1_top5_per_class_and_confusion_by_hand():
    scores = torch.tensor(
        [
            [9.0, 1, 2, 3, 4, 5],  # true 0: top-1 0, right
            [9.0, 8, 0, 0.5, 0.2, 0.1],  # true 1: top-1 0, wrong; 1 is second: a top-5 hit
            [6.0, 5, 0, 4, 3, 2],  # true 2: its score is the lowest of six: a top-5 miss
            [0.0, 9, 1, 2, 3, 4],  # true 1: top-1 1, right
        ]
    )
    targets = torch.tensor([0, 1, 2, 1])
    meter = Meter()
    meter.update(scores[:1], targets[:1])
    meter.update(scores[1:], targets[1:])
    result = meter.result("center")
    assert result.images == 4 and result.protocol == "center" and result.k == 5
    assert result.top1_error == pytest.approx(2 / 4)
    assert result.top5_error == pytest.approx(1 / 4)
    assert result.confusion[:3] == [[1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0]]
    assert result.confusion[3:] == [[0] * 6] * 3
    assert result.per_class_accuracy[:3] == [1.0, 0.5, 0.0]
    assert all(math.isnan(a) for a in result.per_class_accuracy[3:])  # no images of classes 3-5
    as_dict = result.to_dict()
    assert as_dict["per_class_accuracy"] == [1.0, 0.5, 0.0, None, None, None]
    assert as_dict["top1_error"] == 0.5 and as_dict["images"] == 4


def test_meter_uses_top_k_with_k_the_number_of_classes_when_fewer_than_five():
    meter = Meter(num_classes=3)
    meter.update(torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]]), torch.tensor([2, 0]))
    result = meter.result("10crop")
    assert result.k == 3
    assert result.top1_error == 0.5 and result.top5_error == 0.0  # top-3 of 3 classes always hits
    assert result.confusion == [[1, 0, 0], [0, 0, 0], [0, 1, 0]]


def test_meter_refuses_bad_batches_and_an_empty_run():
    meter = Meter(num_classes=4)
    with pytest.raises(EvaluationError, match="No images"):
        meter.result()
    with pytest.raises(EvaluationError, match=r"in \[0, 4\)"):
        meter.update(torch.zeros(2, 4), torch.tensor([0, 4]))
    with pytest.raises(EvaluationError, match="5 classes"):
        meter.update(torch.zeros(2, 5), torch.tensor([0, 1]))
    with pytest.raises(EvaluationError, match="N x classes"):
        meter.update(torch.zeros(3, 4), torch.tensor([0, 1]))


def test_an_empty_evaluation_can_be_a_result_of_no_images():
    """allow_empty (training's validation, whose files may all be unreadable, or a process's empty share):
    0 images, NaN errors (None in JSON), a zero confusion matrix; the class count must be known."""
    empty = Meter(num_classes=3).result("center", allow_empty=True)
    assert empty.images == 0 and math.isnan(empty.top1_error) and math.isnan(empty.top5_error)
    assert empty.confusion == [[0] * 3] * 3 and all(math.isnan(a) for a in empty.per_class_accuracy)
    as_dict = empty.to_dict()
    assert as_dict["top1_error"] is None and as_dict["per_class_accuracy"] == [None] * 3
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    nothing = evaluate(model, [], crop=2, num_classes=3, allow_empty=True)
    assert nothing.images == 0 and nothing.num_classes == 3
    with pytest.raises(EvaluationError, match="No images"):
        Meter().result(allow_empty=True)  # how many classes is unknown


def test_result_json_is_rounded_to_six_decimals():
    meter = Meter(num_classes=3)
    scores = torch.eye(3)[[0, 1, 2, 0, 0, 1, 2]]  # 7 images: classes 0, 1, 2, then 1 and 2 wrong
    meter.update(scores, torch.tensor([0, 1, 2, 0, 1, 1, 2]))
    result = meter.result("center")
    assert result.top1_error == 1 - 6 / 7  # exact in the result itself
    as_dict = result.to_dict()
    assert as_dict["top1_error"] == 0.142857 and as_dict["top5_error"] == 0.0
    assert as_dict["per_class_accuracy"] == [1.0, 0.666667, 1.0]


# ---------------------------------------------------------------------------------------------------
# The picture


def some_result(classes: int, n: int = 300, protocol: str = "center") -> EvalResult:
    generator = torch.Generator().manual_seed(0)
    targets = torch.randint(0, classes, (n,), generator=generator)
    scores = torch.randn(n, classes, generator=generator)
    scores[torch.arange(n), targets] += 1.5  # mostly right: a visible diagonal
    meter = Meter(classes)
    meter.update(scores, targets)
    return meter.result(protocol)


def test_plot_confusion_writes_a_readable_png(tmp_path):
    names = ["tench", "English springer", "cassette player", "chain saw", "church", "French horn"]
    path = plot_confusion(some_result(len(names)), names, tmp_path / "plots" / "confusion.png")
    assert path == tmp_path / "plots" / "confusion.png" and path.stat().st_size > 10_000
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width >= 400 and image.height >= 400
        pixels = np.asarray(image.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20  # not blank, not one colour
    with pytest.raises(EvaluationError, match="3 class names"):
        plot_confusion(some_result(6), names[:3], tmp_path / "bad.png")


def test_plot_confusion_handles_many_classes_without_names(tmp_path):
    path = plot_confusion(some_result(60, n=600, protocol="dense"), None, tmp_path / "many.png")
    with Image.open(path) as image:
        assert len(np.unique(np.asarray(image.convert("L")))) > 20


# ---------------------------------------------------------------------------------------------------
# A whole loader


@pytest.mark.parametrize(
    "protocol, size, scales",
    [("center", 8, ()), ("10crop", 10, ()), ("dense", 12, (8, 12))],
)
def test_evaluate_runs_each_protocol_over_a_loader(protocol, size, scales):
    model = tiny()
    model.train()
    x = images(10, 3, size, size)
    y = torch.arange(10) % 5
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    result = evaluate(model, loader, protocol, scales=scales)  # crop: the model's own 8
    assert result.images == 10 and result.protocol == protocol
    assert sum(map(sum, result.confusion)) == 10 and len(result.confusion) == 5
    assert model.training  # mode restored
    meter = Meter()
    meter.update(predict_probs(model, x, protocol, crop=8, scales=scales), y)
    assert result == meter.result(protocol)  # batch by batch = all at once


def test_evaluate_with_channels_last_and_bfloat16_autocast():
    torch.manual_seed(0)
    model = build(TINY)
    loader = DataLoader(TensorDataset(torch.randn(6, 3, 10, 10), torch.arange(6) % 5), batch_size=4)
    result = evaluate(model, loader, "10crop", channels_last=True, amp="bfloat16", num_classes=5)
    assert result.images == 6 and 0.0 <= result.top1_error <= 1.0 and result.top5_error == 0.0
    with pytest.raises(EvaluationError, match="amp"):
        evaluate(model, loader, "10crop", amp="int8")


# ---------------------------------------------------------------------------------------------------
# Input transforms


@pytest.mark.parametrize("protocol, side", [("center", 16), ("10crop", 20), ("dense", 16)])
def test_eval_input_transform_sizes_and_normalises(protocol, side):
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    transform = eval_input_transform(protocol, 16, mean, std, crop_fraction=0.8)  # 16 / 0.8 = 20
    image = torch.full((3, 40, 60), 51, dtype=torch.uint8)  # 51 / 255 = 0.2 everywhere
    out = transform(image)
    assert out.shape == (3, side, side) and out.dtype == torch.float32
    expected = (0.2 - torch.tensor(mean)) / torch.tensor(std)
    assert torch.allclose(out, expected[:, None, None].expand_as(out), atol=1e-5)


def test_eval_input_transform_refuses_unknown_protocols():
    assert PROTOCOLS == ("center", "10crop", "dense")
    with pytest.raises(EvaluationError, match="Unknown evaluation protocol"):
        eval_input_transform("multi-crop", 224, (0.5,) * 3, (0.5,) * 3)
