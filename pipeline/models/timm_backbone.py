"""Any timm model as a :class:`GroupedNet`, optionally with weights from a local file.

timm's ``group_matcher(coarse=True)`` names the layer groups (stem, stage 1, ...). CNNs whose
children run in sequence (ResNet, ConvNeXt, EfficientNet, ...) are cut at those group boundaries;
Vision Transformers get a stem that runs timm's own patch embedding and position embedding
(``_pos_embed``), then one group per block and the final norm. The last group ends with the
model's own pre-logits head (``forward_head(pre_logits=True)``: global pooling, and the norm some
models apply after it), so its output is the feature vector; the pool after it only turns the
output of an *earlier* group into a vector (global average for feature maps, timm's own pooling for
tokens). Building the net checks that running the groups in sequence reproduces timm's
``forward_features`` + ``forward_head(pre_logits=True)`` exactly and that every parameter belongs
to a group, so freezing, per-group learning rates and frozen-prefix caching see the network timm
defines.

The classifier is replaced through the model's own API: ``reset_classifier(K)`` to load a
checkpoint's K-way head, ``get_classifier()`` to read it, ``reset_classifier(0)`` to remove it.
Weights come from a local file or a timm / Hugging Face model folder (``config.json`` with
``model.safetensors`` or ``pytorch_model.bin``), never downloaded, checked by sha256.
ResNet: He et al., CVPR 2016. ConvNeXt: Liu et al., CVPR 2022. EfficientNet: Tan & Le, ICML 2019.
ViT: Dosovitskiy et al., ICLR 2021.
"""

from __future__ import annotations

import hashlib
import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import FunctionType

import torch
from torch import nn

from pipeline.errors import CheckpointError, ConfigError
from pipeline.models.grouped import GroupedNet
from pipeline.models.weights import load_state_dict

_VIT_STEM = ("patch_embed", "pos_drop", "patch_drop", "norm_pre")
_VIT_TOKENS = ("cls_token", "reg_token", "pos_embed")
FOLDER_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class Weights:
    """A local weights file, its sha256 and, for a model folder, timm's parsed ``config.json``.

    Attributes:
        path: The weights file.
        sha256: Digest of its bytes.
        pretrained_cfg: Input size, mean, std, ... (from config.json, else timm's default for
            the architecture).
        architecture: The architecture config.json names (None for a bare file).
        model_args: Extra ``timm.create_model`` arguments from config.json.
        label_names: Class names of the checkpoint's classifier, when config.json has them.
    """

    path: Path
    sha256: str
    pretrained_cfg: dict = field(default_factory=dict)
    architecture: str | None = None
    model_args: dict = field(default_factory=dict)
    label_names: tuple[str, ...] | None = None


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def locate_weights(
    location: str, sha256: str | None = None, key: str = "model.weights", digest: bool = True
) -> Weights:
    """Resolve ``location`` (a weights file or a timm/HF model folder) and check its sha256
    (``digest`` False: neither hash nor check it, when only a folder's config is needed).

    Raises:
        CheckpointError: Nothing there, a folder without config.json or weights, or a file whose
            sha256 is not ``sha256``.
    """
    from timm.models._hub import load_cfg_from_json, load_model_config_from_path

    if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", str(sha256)):
        raise ConfigError(f"{key}_sha256", sha256, "64 hexadecimal digits (sha256sum's), or null")
    where = Path(location)
    folder = None
    if where.is_dir():
        folder = where
        if not (where / "config.json").is_file():
            raise CheckpointError(where, "a model folder needs config.json (timm / Hugging Face)")
        found = [where / n for n in FOLDER_FILES if (where / n).is_file()]
        if not found:
            raise CheckpointError(
                where, f"no weights in the folder (expected one of {FOLDER_FILES})"
            )
        where = found[0]
    elif not where.is_file():
        raise CheckpointError(
            where, f"weights file not found ({key}); Graftlab never downloads weights"
        )
    actual = file_sha256(where) if digest else ""
    if digest and sha256 is not None and actual != str(sha256).lower():
        raise CheckpointError(
            where, f"sha256 is {actual}, but {key}_sha256 pins {sha256}: a different file"
        )
    if folder is None:
        return Weights(where, actual)
    try:
        cfg, arch, model_args = load_model_config_from_path(folder)
        labels = load_cfg_from_json(folder / "config.json").get("label_names")
    except (OSError, ValueError, KeyError) as err:
        raise CheckpointError(folder / "config.json", f"not a timm model config ({err})") from err
    if isinstance(labels, dict):  # timm allows {index: name} with gaps
        labels = [labels.get(str(i), str(i)) for i in range(int(cfg.get("num_classes", 0)))]
    names = tuple(str(n) for n in labels) if labels else None
    return Weights(where, actual, dict(cfg), arch, dict(model_args or {}), names)


def pretrained_input(
    arch: str, weights: str | None = None, create_args: dict | None = None
) -> dict:
    """The input a model expects: ``channels``, ``size``, ``mean``, ``std``, ``interpolation``.

    From the model folder's config.json when ``weights`` is one, else timm's default pretrained
    config for ``arch``; an ``img_size`` in ``create_args`` sets the size.
    """
    from timm.models import get_pretrained_cfg

    _check_arch(arch)
    cfg = locate_weights(weights).pretrained_cfg if weights else {}
    if not cfg:
        default = get_pretrained_cfg(arch)
        cfg = default.to_dict() if default is not None else {}
    channels, height, _ = cfg.get("input_size", (3, 224, 224))
    size = (create_args or {}).get("img_size", height)
    if isinstance(size, list | tuple):
        size = size[0]
    return {
        "channels": int(channels),
        "size": int(size),
        "mean": [float(m) for m in cfg.get("mean", (0.485, 0.456, 0.406))],
        "std": [float(s) for s in cfg.get("std", (0.229, 0.224, 0.225))],
        "interpolation": cfg.get("interpolation", "bilinear"),
    }


def _check_arch(arch: str) -> None:
    import timm

    if not timm.is_model(arch):
        raise ConfigError("model.arch", arch, "a timm architecture name (timm.list_models())")


class _TimmCode(nn.Module):
    """Runs a piece of timm's own forward code on the modules and parameters it registers.

    The registered modules and parameters are the timm model's own (shared, not copied); the
    model itself is kept unregistered for its plain attributes (flags, pooling type), and its
    methods run bound to this module, so they read the parameters registered here (what
    ``load_state_dict``, ``.to()`` and ``torch.func.functional_call`` see).
    """

    def __init__(
        self,
        model: nn.Module,
        modules: dict[str, nn.Module],
        params: dict[str, nn.Parameter | None] | None = None,
    ) -> None:
        super().__init__()
        for name, module in modules.items():
            self.add_module(name, module)
        for name, param in (params or {}).items():
            self.register_parameter(name, param)
        object.__setattr__(self, "_timm", model)  # last: add_module checks names with getattr

    def __getattr__(self, name: str) -> object:
        try:
            return super().__getattr__(name)
        except AttributeError:
            model = self.__dict__.get("_timm")
            if model is None:
                raise
            if isinstance(inspect.getattr_static(type(model), name, None), FunctionType):
                return getattr(type(model), name).__get__(self)
            return getattr(model, name)


class _Head(_TimmCode):
    """timm's ``forward_head(x, pre_logits=True)``: its pooling and the layers after it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return type(self.__dict__["_timm"]).forward_head(self, x, pre_logits=True)


class _ViTStem(_TimmCode):
    """The start of timm's ``VisionTransformer.forward_features``, up to the first block."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._pos_embed(self.patch_embed(x))
        return self.norm_pre(self.patch_drop(x))


class _Pool(nn.Module):
    """Feature vector of any group's output: the last group's is one already; feature maps are
    averaged; tokens are pooled by the model's own ``pool`` (class token or average)."""

    # the last group's output passes through unchanged, so a linear probe may cache the pooled
    # features (pipeline.transfer.prefix_cache.pool_is_fixed)
    fixed_function = True

    def __init__(self, tokens: _TimmCode | None = None, channels_last: bool = False) -> None:
        super().__init__()
        object.__setattr__(self, "_tokens", tokens)  # unregistered: its modules are in a group
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            return x
        if x.ndim == 3 and self.__dict__["_tokens"] is not None:
            return self.__dict__["_tokens"].pool(x)
        if x.ndim == 4:
            return x.mean((1, 2)) if self.channels_last else x.mean((2, 3))
        return x.flatten(1)


def _param_groups(model: nn.Module) -> dict[str, int]:
    """Parameter name -> coarse group index, from timm's own group matcher."""
    from timm.models._manipulate import group_parameters

    groups = group_parameters(model, model.group_matcher(coarse=True))
    return {name: i for i, names in enumerate(groups.values()) for name in names}


def probe_input(model: nn.Module, in_chans: int) -> torch.Tensor:
    """Two random images the model accepts: its own size for models with a patch embedding
    (timm's ``PatchEmbed.img_size``), else 32 x 32."""
    size = getattr(getattr(model, "patch_embed", None), "img_size", None) or (32, 32)
    return torch.randn(2, in_chans, *size, generator=torch.Generator().manual_seed(0))


def _feature_children(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Names of the top-level children that ``forward_features`` runs, in the order it runs
    them; the others belong to the head (``forward_head``). Observed with forward hooks rather
    than from a list of head names, which differs from one timm family to the next."""
    ran: list[str] = []
    hooks = [
        child.register_forward_pre_hook(lambda *_, name=name: ran.append(name))
        for name, child in model.named_children()
    ]
    try:
        with torch.no_grad():
            model.eval().forward_features(x)
    finally:
        for hook in hooks:
            hook.remove()
    return list(dict.fromkeys(ran))


def _cut(
    module: nn.Module, names: list[str], prefix: str, owner: dict[str, int]
) -> list[tuple[int, nn.Module]]:
    """(group, module) pieces in forward order; a child spanning several groups is split."""
    pieces = []
    for name in names:
        child, full = module.get_submodule(name), f"{prefix}{name}"
        ids = {g for p, g in owner.items() if p.startswith(full + ".")}
        if len(ids) > 1:
            inner = [n for n, _ in child.named_children()]
            pieces += _cut(child, inner, full + ".", owner)
        else:
            pieces.append((ids.pop() if ids else -1, child))
    return pieces


def _groups(model: nn.Module, x: torch.Tensor) -> tuple[list[list[nn.Module]], _Pool]:
    """Layer groups in forward order, the model's pre-logits head closing the last one."""
    from timm.models.vision_transformer import VisionTransformer

    body = _feature_children(model, x)
    head = _Head(model, {n: c for n, c in model.named_children() if n not in body})
    if isinstance(model, VisionTransformer):
        modules = {n: getattr(model, n) for n in _VIT_STEM}
        stem = _ViTStem(model, modules, {n: getattr(model, n) for n in _VIT_TOKENS})
        groups = [[stem], *([b] for b in model.blocks), [model.norm, head]]
        return groups, _Pool(tokens=head)
    groups: list[list[nn.Module]] = []
    for gid, child in _cut(model, body, "", _param_groups(model)):
        if gid >= len(groups) or not groups:
            groups.append([])
        groups[-1].append(child)
    groups[-1].append(head)
    # timm's NHWC models (Swin, ...) say so in output_fmt
    return groups, _Pool(channels_last=getattr(model, "output_fmt", "NCHW") == "NHWC")


def _load(model: nn.Module, state: dict[str, torch.Tensor], weights: Weights, arch: str) -> None:
    """Load ``state`` strictly; a mismatch names the file and what does not fit."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: file {tuple(state[k].shape)}, model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if state[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        problems = []
        if missing:
            problems.append(f"missing {len(missing)} tensors, e.g. {missing[:3]}")
        if unexpected:
            problems.append(f"unexpected {len(unexpected)}, e.g. {unexpected[:3]}")
        if shapes:
            problems.append(f"{len(shapes)} shape mismatches, e.g. {shapes[:2]}")
        raise CheckpointError(
            weights.path,
            f"does not fit timm {arch} as configured (model.arch, model.in_chans, "
            f"model.create_args): {'; '.join(problems)}",
        )
    model.load_state_dict(state)


def _classifier_rows(model: nn.Module, state: dict[str, torch.Tensor]) -> int:
    """Outputs of the checkpoint's classifier (0 when it has none), named by timm's config."""
    name = model.pretrained_cfg.get("classifier")
    if not isinstance(name, str):
        return 0
    weight = state.get(f"{name}.weight")
    return 0 if weight is None else int(weight.shape[0])


def architecture_args(
    arch: str, in_chans: int, found: Weights | None, create_args: dict | None
) -> dict:
    """``timm.create_model`` arguments: a model folder's config.json ones, then ``create_args``.

    Raises:
        ConfigError: The folder is for another architecture or channel count.
    """
    if found and found.architecture and found.architecture != arch.split(".")[0]:
        allowed = f"{found.architecture} (the config.json of {found.path.parent})"
        raise ConfigError("model.arch", arch, allowed)
    saved = dict(found.model_args) if found else {}
    saved.pop("num_classes", None)  # the head is set through the model's own API
    if saved.pop("in_chans", in_chans) != in_chans:
        allowed = f"{found.model_args['in_chans']} (the config.json of {found.path.parent})"
        raise ConfigError("model.in_chans", in_chans, allowed)
    return {**saved, **(create_args or {})}


def portable_config(config: dict) -> dict:
    """``timm_backbone`` arguments that rebuild the same architecture on any machine: a model
    folder's config.json arguments spelled out in ``create_args`` and no weights file (the
    trained weights travel with the model)."""
    weights = config.get("weights")
    if not weights:
        return config
    found = locate_weights(weights, digest=False) if Path(weights).is_dir() else None
    args = architecture_args(
        config["arch"], config.get("in_chans", 1), found, config.get("create_args")
    )
    return {**config, "create_args": args, "weights": None, "weights_sha256": None}


def timm_backbone(
    num_classes: int | None,
    arch: str = "resnet18",
    in_chans: int = 1,
    small_input: bool = True,
    weights: str | None = None,
    weights_sha256: str | None = None,
    create_args: dict | None = None,
    load_weights: bool = True,
) -> GroupedNet:
    """Create a timm model (random init, or weights from a local file) as a grouped network.

    Args:
        num_classes: Head outputs; None keeps the classifier of ``weights`` (a source model).
        arch: timm architecture name, e.g. ``resnet18``, ``convnext_atto``,
            ``vit_tiny_patch16_224``, ``efficientnet_b0``.
        in_chans: Input channels.
        small_input: CIFAR-style stem for tiny images: a 3x3 stride-1 first convolution and no
            max-pool (ResNet family only).
        weights: Optional local ``.safetensors``/``.pth`` file with timm state-dict keys, or a
            timm / Hugging Face model folder. Never downloaded.
        weights_sha256: Pin the weights file's sha256 (a different file is an error).
        create_args: Extra ``timm.create_model`` arguments (e.g. ``img_size``, ``depth``).
        load_weights: False builds the architecture ``weights`` describe (a model folder's
            config.json arguments) with a random init, without reading the weights file.

    Raises:
        ConfigError: Unknown architecture, or one whose forward is not a sequence of groups.
        CheckpointError: Weights missing, pinned to another sha256, or not fitting ``arch``.
    """
    import timm

    _check_arch(arch)
    found = None
    if weights and (load_weights or Path(weights).is_dir()):  # a folder also holds the config
        found = locate_weights(weights, weights_sha256, digest=load_weights)
    kwargs = architecture_args(arch, in_chans, found, create_args)
    try:
        model = timm.create_model(
            arch, pretrained=False, num_classes=0, in_chans=in_chans, **kwargs
        )
    except TypeError as err:
        raise ConfigError("model.create_args", create_args, f"{arch} arguments ({err})") from err
    if small_input:
        if not (hasattr(model, "conv1") and hasattr(model, "maxpool")):
            raise ConfigError("model.small_input", True, "false for non-ResNet architectures")
        model.conv1 = nn.Conv2d(in_chans, model.conv1.out_channels, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
    head_state = None
    if found and load_weights:
        state = load_state_dict(found.path)
        rows = _classifier_rows(model, state)
        if rows:
            model.reset_classifier(rows)
        _load(model, state, found, arch)
        if rows:
            head_state = {k: v.clone() for k, v in model.get_classifier().state_dict().items()}
            model.reset_classifier(0)
    if num_classes is None and head_state is None:
        raise CheckpointError(
            found.path if found else "model.weights",
            "has no classifier: a source model needs the head it was trained with",
        )
    x = probe_input(model, in_chans)
    try:
        groups, pool = _groups(model, x)
    except (RuntimeError, AssertionError) as err:
        raise ConfigError(
            "model.arch", arch, f"a timm model that runs on {x.shape} ({err})"
        ) from err
    sequence = [nn.Sequential(*g) for g in groups]
    feature_dim = _check_sequential(model, sequence, pool, x, arch)
    out = num_classes if num_classes is not None else int(head_state["weight"].shape[0])
    net = GroupedNet(sequence, feature_dim, out, pool=pool)
    if num_classes is None:
        net.head.load_state_dict(head_state)
    return net


def _check_sequential(
    model: nn.Module, groups: list[nn.Sequential], pool: nn.Module, x: torch.Tensor, arch: str
) -> int:
    """Groups in sequence == timm's forward; every parameter in a group. Returns the width."""
    net = nn.Sequential(*groups, pool)
    mine = {id(p) for p in net.parameters()}
    left = [n for n, p in model.named_parameters() if id(p) not in mine]
    if left:
        allowed = f"a timm model whose parameters all lie in its layer groups (not {left[:3]})"
        raise ConfigError("model.arch", arch, allowed)
    model.eval()
    net.eval()
    with torch.no_grad():
        ref = model.forward_head(model.forward_features(x), pre_logits=True)
        try:
            ours = net(x)
        except (RuntimeError, TypeError, AttributeError):
            ours = None
    net.train()
    if ours is None or ours.shape != ref.shape or not torch.allclose(ref, ours, atol=1e-5):
        allowed = "a timm CNN whose children run in sequence, or a VisionTransformer"
        raise ConfigError("model.arch", arch, allowed)
    return int(ref.shape[1])
