"""Backbones: layer groups, timm's group map, weight files (safetensors / weights_only)."""

import pytest
import torch
from safetensors.torch import save_file

from pipeline.errors import CheckpointError
from pipeline.models.predict import predict_logits
from pipeline.models.small_cnn import small_cnn
from pipeline.models.timm_backbone import timm_backbone
from pipeline.models.weights import load_into, load_state_dict, read_metadata, save_weights


def test_resnet18_groups_follow_timms_coarse_group_matcher():
    import timm
    from timm.models._manipulate import group_parameters

    net = timm_backbone(10, arch="resnet18", small_input=True)
    ref = timm.create_model("resnet18", num_classes=0, in_chans=1)
    groups = group_parameters(ref, ref.group_matcher(coarse=True)).values()
    sizes = [sum(ref.get_parameter(n).numel() for n in names) for names in groups]
    ours = [sum(p.numel() for p in g.parameters()) for g in net.groups]
    assert net.num_groups == len(sizes) == 5
    # same groups; only the stem differs (CIFAR-style 3x3 instead of a 7x7 conv)
    assert ours[1:] == sizes[1:]
    assert ours[0] < sizes[0]
    assert net(torch.randn(2, 1, 16, 16)).shape == (2, 10)


def test_forward_from_any_group_matches_the_full_forward():
    torch.manual_seed(0)
    net = small_cnn(10, width=8).eval()
    x = torch.randn(3, 1, 16, 16)
    full = net(x)
    for k in range(net.num_groups + 1):
        mid = net.forward_groups(x, 0, k)
        torch.testing.assert_close(net(mid, start=k), full)


def test_weights_roundtrip_with_metadata(tmp_path):
    net = small_cnn(10, width=8)
    save_weights(net, tmp_path / "w.safetensors", metadata={"num_classes": 10})
    other = small_cnn(10, width=8)
    load_into(other, load_state_dict(tmp_path / "w.safetensors"), tmp_path / "w.safetensors")
    x = torch.randn(2, 1, 16, 16)
    torch.testing.assert_close(predict_logits(net, x), predict_logits(other, x))
    assert read_metadata(tmp_path / "w.safetensors") == {"num_classes": 10}


def test_same_weights_and_metadata_give_the_same_bytes(tmp_path):
    # safetensors orders a header's metadata entries by a randomly seeded hash map, so DVC saw
    # a new file (and re-ran every later stage) each time the same model was written
    net = small_cnn(10, width=8)
    meta = {f"key{i}": {"value": i, "list": [i, "x"]} for i in range(8)}
    files = [tmp_path / f"w{i}.safetensors" for i in range(12)]
    for f in files:
        save_weights(net, f, metadata=meta)
    assert len({f.read_bytes() for f in files}) == 1
    assert read_metadata(files[0]) == meta
    # a file written before the single metadata entry: one JSON value per key
    save_file({"w": torch.zeros(1)}, str(tmp_path / "old.safetensors"), metadata={"a": "1"})
    assert read_metadata(tmp_path / "old.safetensors") == {"a": 1}


def test_torch_checkpoints_load_with_weights_only(tmp_path):
    net = small_cnn(10, width=8)
    torch.save({"state_dict": net.state_dict()}, tmp_path / "ckpt.pt")
    assert set(load_state_dict(tmp_path / "ckpt.pt")) == set(net.state_dict())

    class Evil:
        def __reduce__(self):
            return (print, ("pickle ran",))

    torch.save({"state_dict": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_state_dict(tmp_path / "evil.pt")


def test_missing_corrupt_and_mismatched_checkpoints_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="nope.safetensors: file not found"):
        load_state_dict(tmp_path / "nope.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="bad.safetensors: corrupt"):
        load_state_dict(tmp_path / "bad.safetensors")
    for name, data in (("garbage.pth", b"\x80\x02 not a checkpoint" * 8), ("empty.pt", b"")):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError, match=f"{name}: corrupt") as err:
            load_state_dict(tmp_path / name)
        # one line, and never the advice to unpickle the file with weights_only=False
        assert "\n" not in str(err.value) and "False" not in str(err.value)
    save_weights(small_cnn(10, width=8), tmp_path / "w8.safetensors")
    state = load_state_dict(tmp_path / "w8.safetensors")
    with pytest.raises(CheckpointError, match=r"w8.safetensors: groups\.0\.0\.weight has shape"):
        load_into(small_cnn(10, width=16), state, tmp_path / "w8.safetensors")
    with pytest.raises(CheckpointError, match="head.weight has shape"):
        load_into(small_cnn(3, width=8), state, tmp_path / "w8.safetensors")


def test_state_digest_depends_on_values_not_on_file_bytes(tmp_path):
    from pipeline.models.weights import state_digest

    torch.manual_seed(0)
    net = small_cnn(10, width=8)
    save_weights(net, tmp_path / "a.safetensors", metadata={"x": 1, "y": 2})
    save_weights(net, tmp_path / "b.safetensors", metadata={"y": 2, "x": 1})
    a, b = (load_state_dict(tmp_path / f"{n}.safetensors") for n in "ab")
    assert state_digest(a) == state_digest(b) == state_digest(net.state_dict())
    with torch.no_grad():
        net.head.bias[0] += 1e-6
    assert state_digest(net.state_dict()) != state_digest(a)
