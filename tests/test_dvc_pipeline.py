"""End to end through DVC, in a temporary git repository made from this one, on the tiny config."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from omegaconf import OmegaConf

from tests.conftest import REPO, TINY

pytestmark = pytest.mark.slow
COPY = ["conf", "pipeline", "stages", "dvc.yaml", "pyproject.toml", ".dvcignore", ".gitignore"]


def sh(repo: Path, *cmd: str, stdout_only: bool = False) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)  # use the repository's default store
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout if stdout_only else proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A git + DVC repo holding this project, with conf/ shrunk to the tiny config."""
    repo = tmp_path_factory.mktemp("repo")
    for name in COPY:
        src = REPO / name
        copy = shutil.copytree if src.is_dir() else shutil.copy
        copy(
            src,
            repo / name,
            **({"ignore": shutil.ignore_patterns("__pycache__")} if src.is_dir() else {}),
        )
    (repo / ".dvc").mkdir()
    shutil.copy(REPO / ".dvc" / "config", repo / ".dvc" / "config")
    shutil.copytree(REPO / ".dvc" / "plots", repo / ".dvc" / "plots")  # templates, offline page
    tiny = OmegaConf.to_yaml(OmegaConf.from_dotlist(TINY))
    with (repo / "conf" / "config.yaml").open("a") as f:
        f.write("\n# tests: tiny sizes\n" + tiny)
    sh(repo, "git", "init", "-q")
    sh(repo, "git", "config", "user.email", "t@example.com")
    sh(repo, "git", "config", "user.name", "t")
    sh(repo, sys.executable, "-m", "stages.params")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "tiny")
    return repo


def test_dvc_repro_runs_all_stages_and_records_lineage(repo):
    out = sh(repo, "dvc", "repro")
    for stage in ("prepare", "pretrain", "tune", "transfer", "evaluate"):
        assert f"Running stage '{stage}'" in out
    assert (repo / "mlflow.db").exists(), "default store is at the repository root"
    # the console: each stage one summary line, evaluate's last words say where things are
    assert " done: {" not in out
    assert "rank: no candidate sources (source.candidates is empty): nothing to rank" in out
    evaluate_out = out.split("Running stage 'evaluate'")[1].split("Updating lock file")[0]
    last = [line.strip() for line in evaluate_out.strip().splitlines()][-4:]
    assert last[0] == "Report:  outputs/evaluate/report/report.html  (also report.md)"
    assert last[1].startswith("MLflow:  http://127.0.0.1:5000/#/experiments/")
    assert last[3].startswith("start the UI first: mlflow ui --backend-store-uri sqlite:///")
    # every plot dvc.yaml defines finds its file and fields (a renamed column breaks it)
    shown = json.loads(sh(repo, "dvc", "plots", "show", "--json", stdout_only=True))
    assert not shown.get("errors"), shown.get("errors")
    assert len(shown["data"]) == 7 and all(shown["data"].values())
    metrics = yaml.safe_load((repo / "outputs/evaluate/metrics.json").read_text())
    assert {"transfer.test_acc", "scratch.test_acc", "transfer_gain", "negative_transfer"} <= set(
        metrics
    )

    commit = sh(repo, "git", "rev-parse", "HEAD").strip()
    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("graftlab").experiment_id])
    by_stage = {}
    for r in runs:
        if r.data.tags.get("graftlab.role") != "score":  # evaluate's per-model score runs
            by_stage.setdefault(r.data.tags.get("graftlab.stage"), []).append(r)
    assert {"prepare", "pretrain", "tune", "transfer", "evaluate"} <= set(by_stage)
    for stage in ("prepare", "pretrain", "transfer", "evaluate"):
        tags = by_stage[stage][0].data.tags
        assert tags["mlflow.source.git.commit"] == commit
        assert tags["graftlab.git_dirty"] == "false", tags.get("graftlab.git_dirty_files")
        assert tags["dvc.stage"] == stage
    (ev,) = by_stage["evaluate"]
    scored = [
        client.get_logged_model(m.model_id)
        for m in client.get_run(ev.info.run_id).inputs.model_inputs
    ]  # MLflow returns them in no fixed order; scratch models have no source
    model = next(m for m in scored if "graftlab.source_model_id" in m.tags)
    source = client.get_logged_model(model.tags["graftlab.source_model_id"])
    assert client.get_run(source.source_run_id).data.tags["graftlab.stage"] == "pretrain"


def test_second_repro_runs_nothing(repo):
    out = sh(repo, "dvc", "repro")
    assert "Running stage" not in out
    assert "Data and pipelines are up to date" in out


def test_exp_run_of_a_transfer_key_reruns_only_transfer_and_evaluate(repo):
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "lock", "--allow-empty")
    out = sh(repo, "dvc", "exp", "run", "-S", "transfer.epochs=3")
    assert "Running stage 'transfer'" in out and "Running stage 'evaluate'" in out
    for stage in ("prepare", "pretrain", "tune"):
        assert f"Running stage '{stage}'" not in out
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params["transfer"]["epochs"] == 3
    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("graftlab").experiment_id
    tagged = client.search_runs([exp], "tags.`dvc.exp_name` != ''")
    assert tagged, "runs of a DVC experiment carry its name"


def test_exp_run_of_a_target_key_does_not_rerun_pretrain(repo):
    """prepare rebuilds both domains, but the source folder comes out byte-identical (its run id
    is kept beside it), so DVC skips pretrain and re-runs only what reads the target."""
    out = sh(repo, "dvc", "exp", "run", "-S", "data.target.val_per_class=10")
    assert "Running stage 'prepare'" in out and "Running stage 'tune'" in out
    assert "Running stage 'pretrain'" not in out


def test_going_back_to_parameters_seen_before_restores_from_the_run_cache(repo):
    """DVC's run-cache (it skips any stage with a ``cache: false`` output, so none has one):
    going back to earlier parameters checks the outputs out instead of running the stages;
    prepare runs again (its decode cache is ``persist: true``), and its data come out the same."""
    sh(repo, "git", "checkout", "params.yaml")
    sh(repo, "dvc", "repro")  # the committed parameters (restored, if an earlier test ran them)
    before = (repo / "outputs/evaluate/metrics.json").read_bytes()
    out = sh(repo, "dvc", "exp", "run", "-S", "data.target.val_per_class=4")
    assert "Running stage 'transfer'" in out and "Running stage 'pretrain'" not in out
    sh(repo, "git", "checkout", "params.yaml")
    out = sh(repo, "dvc", "repro")
    for stage in ("rank", "tune", "transfer", "evaluate"):
        assert f"Stage '{stage}' is cached - skipping run, checking out outputs" in out, out
    assert [s for s in re.findall(r"Running stage '(\w+)'", out)] == ["prepare"]
    assert (repo / "outputs/evaluate/metrics.json").read_bytes() == before


def test_a_failing_stage_under_dvc_leaves_its_outs_absent_and_checkout_restores_them(repo):
    """What holds under DVC (README, "Bad input"): DVC deletes a stage's outs before it runs
    it, so a failed stage leaves them absent, never half-written, and ``dvc checkout`` brings
    back the last committed ones. (``persist: true`` would keep them, but it also turns DVC's
    run-cache off for the stage, so the project does not use it.)"""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run(
        ["dvc", "exp", "run", "-S", "transfer.epochs=abc"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    failed = re.search(r"failed to reproduce '(\w+)'", out).group(1)  # the first that reads it
    assert f"error in stage {failed}: transfer.epochs='abc' is not allowed" in out
    assert "Traceback" not in out
    outs = repo / "outputs" / failed / {"rank": "ranking.json", "transfer": "models"}[failed]
    assert not outs.exists(), "DVC removed them before the run"
    assert not [p for p in (repo / "outputs").iterdir() if p.name.startswith(f".{failed}-")]
    sh(repo, "git", "checkout", "params.yaml")
    sh(repo, "dvc", "checkout")
    assert outs.exists()
