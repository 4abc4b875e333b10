"""Any timm backbone: layer groups from timm's group matcher (CNNs and ViTs), weights from a local
file or model folder checked by sha256, and errors naming the file when they do not fit."""

import hashlib

import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.models._manipulate import group_parameters

from pipeline.errors import CheckpointError, ConfigError
from pipeline.models.timm_backbone import pretrained_input, timm_backbone
from stages import _build as build
from tests.conftest import compose

TINY_VIT = {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 48, "num_heads": 3}


def _same_prefix_outputs(net, x):
    net.eval()
    full = net(x)
    for k in range(net.num_groups + 1):
        mid = net.forward_groups(x, 0, k)
        torch.testing.assert_close(net(mid, start=k), full)
        if k:
            assert net.pool(mid).shape[0] == len(x) and net.pool(mid).ndim == 2


def test_convnext_groups_are_timms_coarse_groups_with_the_head_norm_in_the_last():
    torch.manual_seed(0)
    net = timm_backbone(5, arch="convnext_atto", in_chans=3, small_input=False)
    ref = timm.create_model("convnext_atto", num_classes=0)
    groups = list(group_parameters(ref, ref.group_matcher(coarse=True)).values())
    size = lambda names: sum(ref.get_parameter(n).numel() for n in names)  # noqa: E731
    ours = [sum(p.numel() for p in g.parameters()) for g in net.groups]
    # stem, 4 stages; timm's last coarse group (head.norm, after pooling) joins the last stage
    assert ours == [size(g) for g in groups[:4]] + [size(groups[4]) + size(groups[5])]
    _same_prefix_outputs(net, torch.randn(2, 3, 32, 32))


def test_vit_groups_are_stem_blocks_and_norm_and_resume_from_any_group():
    torch.manual_seed(0)
    net = timm_backbone(
        5, arch="vit_tiny_patch16_224", in_chans=3, small_input=False, create_args=TINY_VIT
    )
    assert (
        net.num_groups == TINY_VIT["depth"] + 2
    )  # stem (patch + position embedding), blocks, norm
    stem = {n for n, _ in net.groups[0].named_parameters()}
    assert {"0.cls_token", "0.pos_embed", "0.patch_embed.proj.weight"} <= stem
    _same_prefix_outputs(net, torch.randn(3, 3, 32, 32))


def _checkpoint(tmp_path, arch, args, classes=7):
    torch.manual_seed(1)
    ref = timm.create_model(arch, num_classes=classes, **args).eval()
    path = tmp_path / f"{arch}.safetensors"
    save_file(ref.state_dict(), str(path))
    folder = tmp_path / f"{arch}-folder"
    labels = [f"class{i}" for i in range(classes)]
    timm.models.save_for_hf(
        ref,
        str(folder),
        model_args=args,
        safe_serialization=True,
        model_config={"label_names": labels},
    )
    return ref, path, folder


@pytest.mark.parametrize(
    ("arch", "args"), [("convnext_atto", {}), ("vit_tiny_patch16_224", TINY_VIT)]
)
def test_weights_from_a_file_or_model_folder_give_timms_own_outputs(arch, args, tmp_path):
    ref, path, folder = _checkpoint(tmp_path, arch, args)
    x = torch.randn(2, 3, 32, 32)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    from_file = timm_backbone(
        None,
        arch=arch,
        in_chans=3,
        small_input=False,
        weights=str(path),
        weights_sha256=digest,
        create_args=args,
    )
    from_folder = timm_backbone(
        None, arch=arch, in_chans=3, small_input=False, weights=str(folder)
    )  # the folder's config.json has the args
    for net in (from_file, from_folder):
        assert net.num_classes == 7  # the checkpoint's own head, through reset/get_classifier
        torch.testing.assert_close(net.eval()(x), ref(x))
    new_head = timm_backbone(3, arch=arch, in_chans=3, small_input=False, weights=str(folder))
    torch.testing.assert_close(new_head.eval().forward_features(x), from_folder.forward_features(x))
    assert pretrained_input(arch, str(folder))["size"] == (32 if args else 224)


def test_weights_that_are_missing_pinned_elsewhere_or_do_not_fit_name_the_file(tmp_path):
    _, path, folder = _checkpoint(tmp_path, "convnext_atto", {})
    kw = {"in_chans": 3, "small_input": False}
    with pytest.raises(CheckpointError, match=r"nope\.safetensors: weights file not found"):
        timm_backbone(3, arch="convnext_atto", weights=str(tmp_path / "nope.safetensors"), **kw)
    other = "ab" * 32
    with pytest.raises(
        CheckpointError, match=rf"convnext_atto\.safetensors: sha256 is .* pins {other}"
    ):
        timm_backbone(3, arch="convnext_atto", weights=str(path), weights_sha256=other, **kw)
    # a pin that is no sha256 at all: was reported as a different file
    with pytest.raises(ConfigError, match=r"model\.weights_sha256='00' .*64 hexadecimal digits"):
        timm_backbone(3, arch="convnext_atto", weights=str(path), weights_sha256="00", **kw)
    with pytest.raises(
        CheckpointError,
        match=r"convnext_atto\.safetensors: does not fit timm "
        r"resnet18.*missing \d+ tensors",
    ):
        timm_backbone(3, arch="resnet18", weights=str(path), **kw)
    with pytest.raises(
        CheckpointError,
        match=r"shape mismatches.*stem\.0\.weight: file "
        r"\(40, 3, 4, 4\), model \(40, 1, 4, 4\)",
    ):
        timm_backbone(3, arch="convnext_atto", weights=str(path), in_chans=1, small_input=False)
    # the folder named: "(the folder's config.json)" did not say which
    with pytest.raises(ConfigError) as err:
        timm_backbone(3, arch="resnet18", weights=str(folder), **kw)
    assert str(err.value).endswith(f"expected convnext_atto (the config.json of {folder})")
    (folder / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"needs config\.json"):
        timm_backbone(3, arch="convnext_atto", weights=str(folder), **kw)
    headless = tmp_path / "headless.safetensors"
    save_file(timm.create_model("convnext_atto", num_classes=0).state_dict(), str(headless))
    with pytest.raises(CheckpointError, match=r"headless\.safetensors: has no classifier"):
        timm_backbone(None, arch="convnext_atto", weights=str(headless), **kw)


def test_target_arms_never_start_from_the_weights_file(tmp_path):
    ref, path, _ = _checkpoint(tmp_path, "convnext_atto", {})
    cfg = compose(
        "model=timm", "model.arch=convnext_atto", f"model.weights={path}", "data.channels=3"
    )
    source = build.model_factory(cfg, pretrained=True)(4)
    torch.manual_seed(0)
    arm = build.model_factory(cfg)(4)  # what scratch (and every non-copied group) starts from
    torch.manual_seed(0)
    fresh = timm_backbone(4, arch="convnext_atto", in_chans=3, small_input=False)
    stem = "groups.0.0.0.weight"
    assert torch.equal(source.state_dict()[stem], ref.stem[0].weight)
    assert torch.equal(arm.state_dict()[stem], fresh.state_dict()[stem])
    assert not torch.equal(arm.state_dict()[stem], ref.stem[0].weight)
