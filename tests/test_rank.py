"""Several candidate sources ranked on the labelled target budget before target training, the
realised ranking, and each score's Kendall tau against it (stage rank)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from omegaconf import OmegaConf
from safetensors.torch import save_file

from pipeline.errors import CheckpointError, ConfigError
from pipeline.metrics import candidates as candidates_module
from pipeline.metrics.candidates import Candidate, predicted_order, rank_agreement
from pipeline.models.small_cnn import small_cnn
from pipeline.models.weights import save_weights
from stages import rank
from tests.conftest import compose

TINY_VIT = {"img_size": 32, "patch_size": 8, "depth": 1, "embed_dim": 24, "num_heads": 2}


def test_kendall_tau_per_score_counts_a_distance_as_lower_is_better():
    cands = [
        Candidate(
            "a",
            {"logme": 3.0, "leep": -1.0, "nce": -1, "h_score": 1, "proxy_a_distance": 0.1},
            [0.9],
        ),
        Candidate(
            "b",
            {"logme": 2.0, "leep": -2.0, "nce": -1, "h_score": 1, "proxy_a_distance": 0.5},
            [0.7],
        ),
        Candidate(
            "c",
            {"logme": 1.0, "leep": -0.5, "nce": -1, "h_score": 1, "proxy_a_distance": 1.5},
            [0.4],
        ),
    ]
    tau = rank_agreement(cands)
    assert tau["logme"].tau == pytest.approx(1.0)
    assert tau["proxy_a_distance"].tau == pytest.approx(1.0)
    assert tau["leep"].tau == pytest.approx(-1 / 3)
    assert np.isnan(tau["nce"].tau)  # a constant score ranks nothing
    assert predicted_order(cands, "proxy_a_distance") == ["a", "b", "c"]


def _random_source(pretrained: Path, folder: Path) -> Path:
    """A copy of the pretrained source folder holding a random-init network: a bad candidate."""
    shutil.copytree(pretrained / "outputs/pretrain/model", folder)
    spec = json.loads((folder / "model.json").read_text())
    torch.manual_seed(123)
    save_weights(small_cnn(10, width=16), folder / "weights.safetensors", metadata=spec)
    return folder


def _strict_json(path: str) -> dict:
    def refuse(word: str) -> None:
        raise ValueError(f"{path} holds {word}, which is not JSON")

    return json.loads(Path(path).read_text(), parse_constant=refuse)


def test_three_candidates_are_ranked_on_the_label_budget_then_realised(
    workspace, pretrained, monkeypatch
):
    bad = _random_source(pretrained, workspace / "random_source")
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", num_classes=4, **TINY_VIT)
    save_file(vit.state_dict(), str(workspace / "vit.safetensors"))
    candidates = (
        "source.candidates=["
        "{name: digits, folder: outputs/pretrain/model},"
        f"{{name: random, folder: {bad}}},"
        "{name: vit, model: {_target_: pipeline.models.timm_backbone.timm_backbone,"
        f" arch: vit_tiny_patch16_224, in_chans: 3, small_input: false,"
        f" weights: {workspace / 'vit.safetensors'}, create_args: {TINY_VIT}}}}}]"
    ).replace("'", "")
    cfg = compose(candidates, "source.arm=linear_probe", "source.max_samples=100")
    seen = []
    real = candidates_module.logme
    monkeypatch.setattr(candidates_module, "logme", lambda f, y: seen.append(len(y)) or real(f, y))
    metrics = rank.run(cfg)
    # label scores read each seed's labelled budget only: 1 image per class, 10 classes
    assert seen == [10] * cfg.transfer.seeds * 3
    ranking, written = (_strict_json(f"outputs/rank/{f}.json") for f in ("ranking", "metrics"))
    names = [c["name"] for c in ranking["candidates"]]
    assert names == ["digits", "random", "vit"]
    for c in ranking["candidates"]:
        assert set(c["scores"]) == {"leep", "nce", "logme", "h_score", "proxy_a_distance"}
        assert all(np.isfinite(v) for v in c["scores"].values())
        assert len(c["realised"]) == cfg.transfer.seeds and all(0 <= a <= 1 for a in c["realised"])
    realised = {c["name"]: np.mean(c["realised"]) for c in ranking["candidates"]}
    assert metrics["digits.test_acc"] == pytest.approx(realised["digits"])
    undefined = set()
    for score, tau in ranking["tau"].items():
        keys = [f"tau.{score}{end}" for end in ("", ".low", ".high")]
        if tau["tau"] is None:  # a constant score: NaN in memory, null in the files (bare NaN
            undefined.add(score)  # is not JSON)
            assert all(np.isnan(metrics[k]) and written[k] is None for k in keys)
            continue
        assert metrics[keys[0]] == tau["tau"] == written[keys[0]]
        assert -1 <= metrics[keys[1]] <= metrics[keys[2]] <= 1
    assert undefined == {"h_score"}  # at one label per class, as the README says
    report = Path("outputs/rank/ranking.md").read_text()
    assert "Realised order: " + " > ".join(sorted(realised, key=lambda n: -realised[n])) in report
    assert "| logme |" in report and "| vit |" in report


def test_no_candidates_write_an_empty_ranking_and_a_bad_one_is_named(workspace):
    assert rank.run(compose()) == {"candidates": 0}
    assert json.loads(Path("outputs/rank/ranking.json").read_text()) == {"candidates": []}
    with pytest.raises(ConfigError, match=r"source\.candidates\.0\.name"):
        rank.run(compose("source.candidates=[{folder: outputs/pretrain/model}]"))
    with pytest.raises(ConfigError, match=r"source\.candidates\.0=.*model: \{_target_"):
        rank.run(compose("source.candidates=[{name: x}]"))


def test_a_candidates_missing_or_wrong_weights_name_its_own_key(tmp_path):
    # said "(model.weights)", the key of the configured model, which was null
    spec = {"_target_": rank.TIMM, "arch": "convnext_atto", "in_chans": 3, "small_input": False}
    missing = OmegaConf.create({"name": "c", "model": {**spec, "weights": str(tmp_path / "no")}})
    with pytest.raises(
        CheckpointError, match=r"not found \(source\.candidates\.1\.model\.weights\)"
    ):
        rank.load_candidate(missing, "source.candidates.1")
    torch.manual_seed(0)
    save_file(timm.create_model("convnext_atto").state_dict(), str(tmp_path / "w.safetensors"))
    pinned = {**spec, "weights": str(tmp_path / "w.safetensors"), "weights_sha256": "0" * 64}
    with pytest.raises(CheckpointError, match=r"source\.candidates\.1\.model\.weights_sha256 pins"):
        rank.load_candidate(OmegaConf.create({"name": "c", "model": pinned}), "source.candidates.1")
