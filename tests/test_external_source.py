"""An external pretrained model as the source, on a folder of PNGs the project has never seen, and
the transfer model served: lineage back to the exact weights, the pyfunc in-process and (slow)
behind ``mlflow models serve``."""

import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import timm
import torch
from mlflow import MlflowClient
from safetensors.numpy import load_file

from pipeline.errors import CheckpointError, ConfigError
from stages import evaluate, prepare, pretrain, transfer, tune
from tests import formats
from tests.conftest import compose, decode_entries, write_params

TINY_VIT = {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 48, "num_heads": 3}
ARCH = "vit_tiny_patch16_224"


def _overrides(root: Path, digest: str) -> list[str]:
    return [
        "data/target=imagefolder",
        f"data.target.root={root / 'shapes'}",
        "data.target.val_per_class=3",  # the pool each seed draws data.val_per_class=3 from
        "pretrain=external",
        "model=timm",
        f"model.arch={ARCH}",
        f"model.weights={root / 'vit'}",
        f"model.weights_sha256={digest}",
        "pretrain.origin=test://tiny-vit",
        "pretrain.pretrained_on=noise",
        "data.source.n_train=100",
        "data.source.n_val=50",
        "tune.enabled=false",
        "transfer.run=[scratch,freeze_k]",
        "transfer.freeze_groups=2",
        "transfer.seeds=1",
        "transfer.epochs=2",
        "evaluate.curves.freeze_depth.enabled=false",
        "evaluate.curves.label_efficiency.labels_per_class=[]",
    ]


@pytest.fixture(scope="module")
def external(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], torch.nn.Module]:
    """prepare, pretrain (external tiny ViT) and transfer run on a 4-class PNG shapes folder."""
    root = tmp_path_factory.mktemp("external")
    formats.shapes_folder(root / "shapes", per_class=10)
    torch.manual_seed(0)
    ref = timm.create_model(ARCH, num_classes=5, **TINY_VIT).eval()
    labels = ["red", "green", "blue", "black", "white"]
    timm.models.save_for_hf(
        ref,
        str(root / "vit"),
        model_args=TINY_VIT,
        safe_serialization=True,
        model_config={"label_names": labels},
    )
    digest = hashlib.sha256((root / "vit" / "model.safetensors").read_bytes()).hexdigest()
    overrides = _overrides(root, digest)
    cfg = compose(*overrides)
    old = Path.cwd()
    os.chdir(root)
    try:
        write_params(root, cfg)
        for stage in (prepare, pretrain, tune, transfer):
            stage.run(cfg)
    finally:
        os.chdir(old)
    return root, overrides, ref


def test_external_model_is_the_source_and_lineage_ends_at_its_exact_weights(external):
    root, _, ref = external
    out = root / "outputs"
    card = json.loads((out / "prepare/target/card.json").read_text())
    assert card["classes"] == ["circle", "cross", "square", "triangle"]
    # the model's own input: 3 x 32 x 32 from its config.json, its mean/std
    assert card["splits"]["train"]["shape"] == [3, 32, 32]
    assert card["recipe"]["normalize"] == {"mean": [0.5] * 3, "std": [0.5] * 3}
    spec = json.loads((out / "pretrain/model/model.json").read_text())
    digest = hashlib.sha256((root / "vit" / "model.safetensors").read_bytes()).hexdigest()
    assert spec["classes"] == ["red", "green", "blue", "black", "white"]
    assert spec["external"] == {
        "weights": str(root / "vit" / "model.safetensors"),
        "sha256": digest,
        "origin": "test://tiny-vit",
        "pretrained_on": "noise",
    }
    assert spec["model"]["weights"] is None and spec["model"]["create_args"]["depth"] == 2
    assert json.loads((out / "pretrain/metrics.json").read_text())["external"] == 1
    # the source model holds exactly the external weights, head included
    from pipeline.models.timm_backbone import timm_backbone
    from pipeline.models.weights import load_model

    net = load_model(
        lambda n: timm_backbone(n, arch=ARCH, in_chans=3, small_input=False, create_args=TINY_VIT),
        out / "pretrain/model/weights.safetensors",
        5,
    )
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(net(x), ref(x))
    # MLflow alone: transfer model -> source LoggedModel -> the file's sha256 and origin
    index = json.loads((out / "transfer/models/index.json").read_text())
    client = MlflowClient()
    freeze_k = next(r for r in index["runs"] if r["arm"] == "freeze_k")
    target_model = client.get_logged_model(freeze_k["model_id"])
    source = client.get_logged_model(target_model.tags["graftlab.source_model_id"])
    assert source.tags["graftlab.weights_sha256"] == digest
    assert source.tags["graftlab.weights_origin"] == "test://tiny-vit"
    assert source.tags["graftlab.external"] == "true"
    pre = client.get_run(source.source_run_id)
    assert pre.data.tags["graftlab.weights_sha256"] == digest


def test_transfer_model_loads_as_a_pyfunc_and_reads_image_files_like_prepare(external):
    root, _, _ = external
    index = json.loads((root / "outputs/transfer/models/index.json").read_text())
    row = next(r for r in index["runs"] if r["arm"] == "freeze_k")
    model = mlflow.pyfunc.load_model(f"models:/{row['model_id']}")
    # the decode cache holds the images exactly as prepare decoded them, in file order
    (entry,) = decode_entries(root / "outputs/decoded")
    files = json.loads((entry / "index.json").read_text())["files"]
    cached = load_file(str(entry / "arrays.safetensors"))["x"]
    batch = pd.DataFrame({"image": [(root / "shapes" / f).read_bytes() for f in files]})
    inputs = model.unwrap_python_model().images(batch)
    np.testing.assert_allclose(inputs, (cached / 255 - 0.5) / 0.5, atol=1e-6)
    out = model.predict(batch)
    assert list(out.columns) == ["class", "probability", "probabilities"]
    assert set(out["class"]) <= {"circle", "cross", "square", "triangle"}
    probs = pd.DataFrame(list(out["probabilities"]))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(probs.max(axis=1), out["probability"])
    with pytest.raises(Exception, match="not a usable image"):
        model.predict(pd.DataFrame({"image": [b"not an image"]}))


def test_external_source_problems_stop_pretrain_before_anything_is_written(workspace):
    before = Path("outputs/pretrain/model/weights.safetensors").read_bytes()
    with pytest.raises(CheckpointError, match=r"nope: weights file not found"):
        pretrain.run(
            compose(
                "pretrain=external",
                "model=timm",
                "model.arch=convnext_atto",
                f"model.weights={workspace / 'nope'}",
            )
        )
    with pytest.raises(ConfigError, match=r"model=.*small_cnn.*model=timm for pretrain=external"):
        pretrain.run(
            compose(
                "pretrain=external",
                "data.image_size=16",
                "data.normalize=source",
                "data.channels=1",
            )
        )
    assert Path("outputs/pretrain/model/weights.safetensors").read_bytes() == before
    assert sorted(p.name for p in Path("outputs").iterdir()) == ["decoded", "prepare", "pretrain"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_whole_pipeline_reports_the_folders_class_names_and_the_model_serves(
    external, tmp_path, monkeypatch
):
    root, overrides, _ = external
    work = tmp_path / "work"
    shutil.copytree(root, work)
    monkeypatch.chdir(work)
    evaluate.run(compose(*overrides))
    shapes = {"circle", "cross", "square", "triangle"}
    confusion = (work / "outputs/evaluate/plots/confusion.csv").read_text().splitlines()
    assert confusion[0] == "actual,predicted"
    assert {c for line in confusion[1:] for c in line.split(",")} <= shapes
    assert (
        "Transfer from noise to shapes" in (work / "outputs/evaluate/report/report.md").read_text()
    )
    index = json.loads((work / "outputs/transfer/models/index.json").read_text())
    model_id = next(r for r in index["runs"] if r["arm"] == "freeze_k")["model_id"]
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            f"models:/{model_id}",
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(180):
            try:
                urllib.request.urlopen(f"{url}/ping", timeout=1)
                break
            except OSError:
                assert server.poll() is None, server.stderr.read()
                time.sleep(0.5)
        files = sorted((work / "shapes").glob("*/*.png"))[:3]
        images = [[base64.b64encode(f.read_bytes()).decode()] for f in files]
        body = json.dumps({"dataframe_split": {"columns": ["image"], "data": images}})
        request = urllib.request.Request(
            f"{url}/invocations", body.encode(), {"Content-Type": "application/json"}
        )
        answer = json.loads(urllib.request.urlopen(request, timeout=60).read())
    finally:
        server.terminate()
        server.wait(timeout=30)
    rows = answer["predictions"]
    assert len(rows) == 3
    for row in rows:
        assert row["class"] in {"circle", "cross", "square", "triangle"}
        assert abs(sum(row["probabilities"].values()) - 1) < 1e-6
