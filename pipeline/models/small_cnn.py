"""A small VGG-style CNN with four layer groups, sized for CPU training at 16x16.

Conv-BN-ReLU blocks in the style of Simonyan & Zisserman (ICLR 2015) with batch normalisation
(Ioffe & Szegedy, ICML 2015). Groups: stem, block1 (/2), block2 (/2), block3.
"""

from __future__ import annotations

from torch import nn

from pipeline.models.grouped import GroupedNet


def _conv(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


def small_cnn(num_classes: int, in_chans: int = 1, width: int = 16) -> GroupedNet:
    """Build the 4-group CNN.

    Args:
        num_classes: Head outputs.
        in_chans: Input channels.
        width: Channels of the stem; blocks use width, 2*width and 4*width.
    """
    groups = [
        nn.Sequential(*_conv(in_chans, width)),
        nn.Sequential(*_conv(width, width), nn.MaxPool2d(2)),
        nn.Sequential(*_conv(width, 2 * width), nn.MaxPool2d(2)),
        nn.Sequential(*_conv(2 * width, 4 * width)),
    ]
    return GroupedNet(groups, feature_dim=4 * width, num_classes=num_classes)
