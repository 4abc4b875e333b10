"""Any sequential timm CNN (ResNet-18 by default) as a :class:`GroupedNet`.

timm's ``group_matcher(coarse=True)`` names the layer groups (stem, stage 1, ...). We walk the
model's children in forward order and cut them at those group boundaries, then check that running
the groups in sequence reproduces ``forward_features`` exactly, so freezing, per-group learning
rates and frozen-prefix caching see the same network timm defines. ResNet: He et al., "Deep
Residual Learning for Image Recognition", CVPR 2016.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from pipeline.errors import ConfigError
from pipeline.models.grouped import GroupedNet
from pipeline.models.weights import load_state_dict

_HEAD_CHILDREN = {"global_pool", "fc", "head", "head_drop", "classifier", "fc_norm", "head_hidden"}


def _param_groups(model: nn.Module) -> dict[str, int]:
    """Parameter name -> coarse group index, from timm's own group matcher."""
    from timm.models._manipulate import group_parameters

    groups = group_parameters(model, model.group_matcher(coarse=True))
    return {name: i for i, names in enumerate(groups.values()) for name in names}


def _cut(module: nn.Module, prefix: str, owner: dict[str, int]) -> list[tuple[int, nn.Module]]:
    """(group, module) pieces in forward order; a child spanning several groups is split."""
    pieces = []
    for name, child in module.named_children():
        full = f"{prefix}{name}"
        if not prefix and name in _HEAD_CHILDREN:
            continue
        ids = {g for p, g in owner.items() if p.startswith(full + ".")}
        if len(ids) > 1:
            pieces += _cut(child, full + ".", owner)
        else:
            pieces.append((ids.pop() if ids else -1, child))
    return pieces


def timm_backbone(
    num_classes: int,
    arch: str = "resnet18",
    in_chans: int = 1,
    small_input: bool = True,
    weights: str | None = None,
) -> GroupedNet:
    """Create a timm model (random init, or weights from a local file) as a grouped network.

    Args:
        num_classes: Head outputs.
        arch: timm architecture name, e.g. ``resnet18``, ``resnet34``.
        in_chans: Input channels.
        small_input: CIFAR-style stem for tiny images: a 3x3 stride-1 first convolution and no
            max-pool (ResNet family only).
        weights: Optional local ``.safetensors``/``.pt`` file with timm state-dict keys. Never
            downloaded.
    """
    import timm

    if arch not in timm.list_models():
        raise ConfigError("model.arch", arch, "a timm architecture name (timm.list_models())")
    model = timm.create_model(arch, pretrained=False, num_classes=0, in_chans=in_chans)
    if small_input:
        if not (hasattr(model, "conv1") and hasattr(model, "maxpool")):
            raise ConfigError("model.small_input", True, "false for non-ResNet architectures")
        model.conv1 = nn.Conv2d(in_chans, model.conv1.out_channels, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
    if weights:
        state = load_state_dict(Path(weights))
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or [k for k in unexpected if not k.startswith(("fc.", "head.", "classifier."))]:
            raise ConfigError(
                "model.weights",
                weights,
                f"a {arch} state dict (missing {missing[:3]}, unexpected {unexpected[:3]})",
            )
    pieces = _cut(model, "", _param_groups(model))
    groups: list[list[nn.Module]] = []
    for gid, child in pieces:
        if gid >= len(groups) or not groups:
            groups.append([])
        groups[-1].append(child)
    net = GroupedNet([nn.Sequential(*g) for g in groups], model.num_features, num_classes)
    _check_sequential(model, net, in_chans, arch)
    return net


def _check_sequential(model: nn.Module, net: GroupedNet, in_chans: int, arch: str) -> None:
    model.eval()
    net.eval()
    x = torch.randn(2, in_chans, 32, 32)
    with torch.no_grad():
        same = torch.allclose(
            model.forward_head(model.forward_features(x), pre_logits=True),
            net.forward_features(x),
            atol=1e-5,
        )
    if not same:
        raise ConfigError("model.arch", arch, "a timm CNN whose children run in sequence")
    net.train()
