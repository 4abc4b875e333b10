"""Config -> the two prepared domains: one input size, channel count and normalisation.

``data.image_size`` and ``data.normalize`` may say ``model``: the backbone's own pretrained input
(timm's pretrained config: from the model folder's config.json, else timm's default for the
architecture). Only a value that says ``model`` is resolved; an explicit one is used as given.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from pipeline.data.classes import align_classes
from pipeline.data.domain import Domain
from pipeline.data.images.transforms import channel_stats, normalize, to_channels
from pipeline.errors import ConfigError
from stages._build import build_domain

ROLES = ("source", "target")
NORMALIZE = ("source", "model", "none")
TIMM = "pipeline.models.timm_backbone.timm_backbone"


def model_input(cfg: DictConfig) -> dict:
    """The backbone's pretrained input (channels, size, mean, std); only timm models have one."""
    from pipeline.models.timm_backbone import pretrained_input

    model = cfg.model
    if model.get("_target_") != TIMM:
        key = "data.image_size" if cfg.data.image_size == "model" else "data.normalize"
        allowed = f"an explicit value ({model.get('_target_')} has no pretrained config)"
        raise ConfigError(key, "model", allowed)
    args = (
        OmegaConf.to_container(model.create_args, resolve=True) if model.get("create_args") else {}
    )
    return pretrained_input(model.arch, model.get("weights"), args)


def prepared_domains(cfg: DictConfig) -> tuple[Domain, Domain]:
    """Source and target at one size and channel count, classes matched when asked, and
    normalised per channel (source statistics, the model's, or not at all)."""
    data = cfg.data
    if data.normalize not in NORMALIZE:
        raise ConfigError("data.normalize", data.normalize, NORMALIZE)
    wanted = model_input(cfg) if "model" in (data.image_size, data.normalize) else None
    cfg = cfg.copy()
    for role in ROLES:  # a dataset's image_size that says `model` gets the model's
        if OmegaConf.select(cfg, f"data.{role}.image_size") == "model":
            OmegaConf.update(cfg, f"data.{role}.image_size", wanted["size"])
    channels = data.channels
    if isinstance(channels, bool) or channels not in (1, 3):
        raise ConfigError("data.channels", channels, "1 (grayscale) or 3 (RGB)")
    if data.normalize == "model" and wanted["channels"] != channels:
        allowed = f"{wanted['channels']} (the channels of the model's pretrained input)"
        raise ConfigError("data.channels", channels, allowed)
    # the target first: it is usually the user's own data, so its problems show up first
    target, source = (_images(build_domain(cfg, role), channels) for role in reversed(ROLES))
    if source.input_shape != target.input_shape:
        raise ConfigError(
            "data.source.image_size / data.target.image_size",
            [list(source.input_shape), list(target.input_shape)],
            "the same image size for both domains",
        )
    if data.match_classes:
        target = align_classes(source, target)
    if data.normalize == "none" or "image" not in {source.modality} | {target.modality}:
        return source, target
    if data.normalize == "source":
        mean, std = channel_stats(source)
    else:
        mean, std = wanted["mean"], wanted["std"]
    return normalize(source, mean, std), normalize(target, mean, std)


def _images(domain: Domain, channels: int) -> Domain:
    if domain.modality != "image":
        return domain
    try:
        return to_channels(domain, channels)
    except ValueError as err:  # e.g. 4-channel arrays from an npz file
        allowed = f"a count {domain.name} converts to ({err})"
        raise ConfigError("data.channels", channels, allowed) from err
