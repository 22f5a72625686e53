"""The ILSVRC classification challenge's history as data: each year's entry, its published top-5 error,
and the network of the zoo that stands for it.

The figures are the challenge's own (top-5 error on the test set of the classification task, as the
organisers and the entries' papers report them); the lecture quotes the same ones. Before 2012 the
entries were hand-made features with classical classifiers and have no network in the zoo (`model`
is None; issue 14's classical pipelines stand for them in a replay). The analysis of the zoo networks
(depth, parameters, multiply-adds) is not here: `ilsvrc.analysis.history` joins it on.
"""

from __future__ import annotations

from dataclasses import dataclass

RUSSAKOVSKY = "Russakovsky et al., ImageNet Large Scale Visual Recognition Challenge, IJCV 2015"
LECTURE = "the lecture (lecture 11, CNNs on ImageNet)"


@dataclass(frozen=True)
class Entry:
    """One row of the history: a year's entry in the classification task."""

    year: int
    entry: str  # the entry's name in the results table
    team: str
    top5_error: float  # percent, classification test set
    method: str  # what it was, in a few words
    model: str | None  # the zoo network that stands for it; None before the deep era
    source: str
    note: str = ""

    @property
    def deep(self) -> bool:
        return self.model is not None


@dataclass(frozen=True)
class Reference:
    """A level of error to compare with, not an entry (human error)."""

    label: str
    top5_error: float
    source: str


ENTRIES: tuple[Entry, ...] = (
    Entry(
        2010,
        "NEC-UIUC",
        "NEC Labs America and UIUC",
        28.2,
        "SIFT and LBP descriptors, LCC and super-vector coding, spatial pyramid, linear SVMs",
        None,
        RUSSAKOVSKY + "; " + LECTURE,
    ),
    Entry(
        2011,
        "XRCE",
        "Xerox Research Centre Europe",
        25.8,
        "Fisher vectors on SIFT and colour descriptors, linear SVMs",
        None,
        RUSSAKOVSKY + "; " + LECTURE,
    ),
    Entry(
        2012,
        "SuperVision",
        "U. of Toronto (Krizhevsky, Sutskever, Hinton)",
        16.4,
        "AlexNet: a CNN of 8 weight layers on two GPUs; 5 CNNs averaged",
        "alexnet",
        "Krizhevsky et al., NIPS 2012 (Table 2); " + LECTURE,
        "15.3 with extra training data (ImageNet Fall 2011); the runner-up, SIFT + Fisher vectors, 26.2",
    ),
    Entry(
        2013,
        "Clarifai",
        "Clarifai (Zeiler)",
        11.7,
        "a ZFNet-based ensemble: AlexNet's design tuned by looking at what the filters see",
        "zfnet",
        "Zeiler and Fergus, ECCV 2014; " + RUSSAKOVSKY + "; " + LECTURE,
    ),
    Entry(
        2014,
        "VGG",
        "U. of Oxford (Simonyan, Zisserman)",
        7.3,
        "VGG: stacks of 3x3 convolutions, 16 and 19 weight layers; 7 nets averaged (second place)",
        "vgg19",
        "Simonyan and Zisserman, ICLR 2015 (Table 7); " + LECTURE,
        "6.8 after the challenge with 2 nets; the lecture's depth is configuration E, 19 layers",
    ),
    Entry(
        2014,
        "GoogLeNet",
        "Google (Szegedy et al.)",
        6.7,
        "GoogLeNet: Inception modules, 22 weight layers deep; 7 nets, 144 crops each (winner)",
        "googlenet",
        "Szegedy et al., CVPR 2015 (Table 2); " + LECTURE,
    ),
    Entry(
        2015,
        "MSRA",
        "Microsoft Research Asia (He, Zhang, Ren, Sun)",
        3.57,
        "ResNet: residual blocks, 152 weight layers; an ensemble of 6 nets of different depths",
        "resnet152",
        "He et al., CVPR 2016 (Table 5); " + LECTURE,
    ),
)

HUMAN: tuple[Reference, ...] = (
    Reference("human (Russakovsky et al.: 1,500 test images)", 5.1, RUSSAKOVSKY),
    Reference("human (the lecture: 'more than 3.5%')", 3.5, LECTURE),
)
