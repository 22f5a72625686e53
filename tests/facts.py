"""The few published figures the tests check the code against, carried in the repository.

Each comes from the project's facts sheet (shared/docs/facts.md, which sits beside the repository and
is not in a plain clone) with the words that state it there and the source the sheet names for it.
The tests use these values, so they run everywhere; `test_the_carried_facts_are_the_sheets` (in
test_lecture.py) checks, wherever the sheet is present, that each quoted phrase is still in it and
still states the value.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# beside the repository (ILSVRC_FACTS names it elsewhere, e.g. from a git worktree)
SHEET = Path(
    os.environ.get("ILSVRC_FACTS") or Path(__file__).resolve().parents[2] / "shared" / "docs" / "facts.md"
)


@dataclass(frozen=True)
class Fact:
    """A figure, the phrase of facts.md that states it (as written there) and where the sheet has it from."""

    value: int | float
    quote: str
    source: str

    @property
    def written(self) -> str:
        """The value as the phrase writes it: 60,965,224 or 16.4."""
        return f"{self.value:,}" if isinstance(self.value, int) else f"{self.value:g}"


AK, ZF, VGG, TV = "Krizhevsky et al. 2012", "Zeiler & Fergus 2013", "Simonyan & Zisserman 2014", "torchvision"
ILSVRC = "ILSVRC classification results, top-5 error on test"
OURS = "the sheet's own count"

FACTS: dict[str, Fact] = {
    # ILSVRC top-5 test error, percent
    "ilsvrc_2010": Fact(28.2, "2010 NEC-UIUC 28.2", ILSVRC),
    "ilsvrc_2011": Fact(25.8, "2011 XRCE 25.8", ILSVRC),
    "ilsvrc_2012": Fact(16.4, "2012 SuperVision (AlexNet) 16.4", ILSVRC),
    "ilsvrc_2012_runner_up": Fact(
        26.2, "At ILSVRC-2012 the runner-up (SIFT + Fisher vectors) had 26.2% top-5", AK
    ),
    "ilsvrc_2013": Fact(11.7, "2013 Clarifai 11.7", ILSVRC),
    "ilsvrc_2014_googlenet": Fact(6.7, "2014 GoogLeNet 6.7", ILSVRC),
    "ilsvrc_2014_vgg": Fact(7.3, "VGG 7.3", ILSVRC),
    "ilsvrc_2015": Fact(3.57, "2015 ResNet 3.57", ILSVRC),
    # single networks on ILSVRC-2012 validation, top-5 error, percent
    "alexnet_one_cnn_val_top5": Fact(18.2, "1 CNN 40.7 top-1 / 18.2 top-5", AK),
    "zfnet_one_net_val_top5": Fact(16.5, "1 net 38.4 top-1 / 16.5 top-5", ZF),
    # layers with parameters, of the networks the zoo does not have
    "googlenet_layers": Fact(22, "GoogLeNet 22, ResNet 152", "Szegedy et al. 2014"),
    "resnet_layers": Fact(152, "GoogLeNet 22, ResNet 152", "He et al. 2015"),
    # parameter counts
    "alexnet_params": Fact(60_965_224, "Parameters with groups=2: 60,965,224", OURS),
    "alexnet_torchvision_params": Fact(61_100_840, "61,100,840 parameters", TV),
    "zfnet_params_millions": Fact(62.4, "about 62.4M for the base net", OURS),
    "zfnet_b_params_millions": Fact(107.6, "about 107.6M for (b)", OURS),
    "vgg11_params": Fact(132_863_336, "vgg11 132,863,336", TV),
    "vgg13_params": Fact(133_047_848, "vgg13 133,047,848", TV),
    "vgg16_params": Fact(138_357_544, "vgg16 138,357,544", TV),
    "vgg19_params": Fact(143_667_240, "vgg19 143,667,240", TV),
    "vgg11_bn_params": Fact(132_868_840, "_bn: 132,868,840", TV),
    "vgg13_bn_params": Fact(133_053_736, "132,868,840; 133,053,736", TV),
    "vgg16_bn_params": Fact(138_365_992, "133,053,736; 138,365,992", TV),
    "vgg19_bn_params": Fact(143_678_248, "138,365,992; 143,678,248", TV),
    "vgg16_conv_params": Fact(14_714_688, "VGG16 conv part 14,714,688", OURS),
    "vgg16_fc_params": Fact(123_642_856, "FC part 123,642,856", OURS),
    # the VGG paper's Table 2, millions of parameters
    "vgg_a_millions": Fact(133, "A 133", VGG),
    "vgg_a_lrn_millions": Fact(133, "A-LRN 133", VGG),
    "vgg_b_millions": Fact(133, "B 133", VGG),
    "vgg_c_millions": Fact(134, "C 134", VGG),
    "vgg_d_millions": Fact(138, "D 138", VGG),
    "vgg_e_millions": Fact(144, "E 144", VGG),
    # multiply-adds as torchinfo counts them (bias adds included), 224x224, one image
    "alexnet_torchvision_torchinfo_macs": Fact(714_682_664, "alexnet 714,682,664", "torchinfo"),
    "vgg16_torchinfo_macs": Fact(15_483_821_032, "vgg16 15,483,821,032", "torchinfo"),
}


def fact(name: str) -> int | float:
    return FACTS[name].value
