"""What a person sees: lineage in MLflow (checked through MlflowClient, as the UI reads it), the
optuna-dashboard names and links, the console's last words, the DVC plot definitions and the
metrics files. The browser checks of the same things are tests/browser/check_*.py (not run in
CI)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from pipeline.report.headline import HEADLINE, split_metrics
from pipeline.report.html import render_html
from pipeline.tracking.lineage import git_state
from pipeline.tracking.links import run_page, runs_table
from stages import evaluate, prepare, transfer, tune
from tests.conftest import REPO, compose, write_params

FAST = (
    "transfer.run=[scratch,freeze_k]",
    "evaluate.curves.freeze_depth.enabled=false",
    "evaluate.curves.label_efficiency.labels_per_class=[]",
    "evaluate.scores.enabled=false",
)


@pytest.fixture(scope="module")
def walked(pretrained: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """tune, transfer and evaluate on the tiny config (two arms, no curves) in a private copy of
    the pretrained workspace; the evaluate stage's console output is kept."""
    folder = tmp_path_factory.mktemp("walked")
    shutil.copytree(pretrained / "outputs", folder / "outputs")
    cfg = compose(*FAST)
    write_params(folder, cfg)
    old = Path.cwd()
    os.chdir(folder)
    try:
        tune.run(cfg)
        transfer.run(cfg)
        console = io.StringIO()
        with contextlib.redirect_stdout(console):
            evaluate.run(cfg)
        read = lambda p: json.loads((folder / p).read_text())  # noqa: E731
        return {
            "folder": folder,
            "console": console.getvalue(),
            "index": read("outputs/transfer/models/index.json"),
            "source": read("outputs/pretrain/model/mlflow.json"),
            "evaluate": read("outputs/evaluate/report/mlflow.json")["run_id"],
            "best": yaml.safe_load((folder / "outputs/tune/best.yaml").read_text()),
        }
    finally:
        os.chdir(old)


def _model_ids(io_list) -> set[str]:
    return {m.model_id for m in io_list or []}


def test_trained_models_are_outputs_of_their_runs_and_the_source_model_an_input(walked):
    client = MlflowClient()
    source = walked["source"]
    pre = client.get_run(source["run_id"])
    assert source["model_id"] in _model_ids(pre.outputs.model_outputs)
    assert source["model_id"] not in _model_ids(pre.inputs.model_inputs)
    for row in walked["index"]["runs"]:
        run = client.get_run(row["run_id"])
        assert row["model_id"] in _model_ids(run.outputs.model_outputs)
        assert row["model_id"] not in _model_ids(run.inputs.model_inputs)
        uses_source = row["arm"] != "scratch"
        assert (source["model_id"] in _model_ids(run.inputs.model_inputs)) == uses_source
        assert client.get_logged_model(row["model_id"]).source_run_id == row["run_id"]


def test_scratch_runs_and_models_carry_nothing_of_the_source(walked):
    client = MlflowClient()
    for row in walked["index"]["runs"]:
        run = client.get_run(row["run_id"])
        model = client.get_logged_model(row["model_id"])
        source_keys = {k for k in {**run.data.tags, **model.params} if "source_" in k}
        if row["arm"] == "scratch":
            assert not source_keys, source_keys
            assert walked["source"]["run_id"] not in run.data.tags["mlflow.note.content"]
        else:
            assert model.params["source_model_id"] == walked["source"]["model_id"]
            assert model.params["source_run_id"] == walked["source"]["run_id"]


def test_every_model_has_val_acc_and_test_acc_and_sorts_by_test_acc(walked):
    client = MlflowClient()
    exp = client.get_run(walked["evaluate"]).info.experiment_id
    ids = {r["model_id"] for r in walked["index"]["runs"]}
    for model_id in ids:
        names = {m.key for m in client.get_logged_model(model_id).metrics or []}
        assert {"val_acc", "test_acc", "test_macro_f1"} <= names, names
        assert not any(n.startswith(("transfer_gain", "scores.", "arms.")) for n in names)
    ranked = client.search_logged_models(
        [exp],
        filter_string="metrics.test_acc >= 0",
        order_by=[{"field_name": "metrics.test_acc", "ascending": False}],
    )
    ranked = [m for m in ranked if m.model_id in ids]
    accs = [next(x.value for x in m.metrics if x.key == "test_acc") for m in ranked]
    assert len(ranked) == len(ids) and accs == sorted(accs, reverse=True)


def test_evaluate_run_has_params_config_test_split_summary_and_html_report(walked):
    client = MlflowClient()
    ev = client.get_run(walked["evaluate"])
    assert ev.data.params["evaluate.confidence"] == "0.95"
    assert ev.data.params["transfer.primary"] == "freeze_k"
    assert "transfer_gain" in ev.data.metrics and "test_acc" not in ev.data.metrics
    (test,) = [d for d in ev.inputs.dataset_inputs if d.dataset.name.endswith("/test")]
    card = json.loads((walked["folder"] / "outputs/prepare/target/card.json").read_text())
    sha = card["splits"]["test"]["sha256"]
    assert json.loads(test.dataset.profile)["sha256"] == sha
    assert {t.key: t.value for t in test.tags}["mlflow.data.context"] == "evaluation"
    assert _model_ids(ev.inputs.model_inputs) == {r["model_id"] for r in walked["index"]["runs"]}
    artifacts = {a.path for a in client.list_artifacts(ev.info.run_id)}
    assert "config.yaml" in artifacts
    html = Path(client.download_artifacts(ev.info.run_id, "report/report.html")).read_text()
    assert html.count('src="data:image/png;base64,') >= 2 and ".png" not in html.split("<body>")[1]
    # one nested score run per model: its test_acc on the run and on the model
    scores = client.search_runs(
        [ev.info.experiment_id], f"tags.`mlflow.parentRunId` = '{ev.info.run_id}'"
    )
    assert len(scores) == len(walked["index"]["runs"])
    assert all("test_acc" in r.data.metrics for r in scores)
    for r in scores:  # a scratch model's score run carries nothing of the source either
        has_source = any("source_" in k for k in r.data.tags)
        assert has_source == (r.data.tags["graftlab.arm"] != "scratch")


def test_dataset_inputs_name_the_final_files_and_their_full_sha256(walked):
    client = MlflowClient()
    runs = [walked["source"]["run_id"], *(r["run_id"] for r in walked["index"]["runs"])]
    for run_id in runs:
        for d in client.get_run(run_id).inputs.dataset_inputs:
            path = Path(json.loads(d.dataset.source)["uri"].removeprefix("file://"))
            assert path.is_file(), path
            assert not any(part.startswith(".") for part in path.parts[-4:]), path
            sha = json.loads(d.dataset.profile)["sha256"]
            assert len(sha) == 64 and sha.startswith(d.dataset.digest)


def test_run_descriptions_link_the_runs_they_build_on(walked):
    client = MlflowClient()
    ev = client.get_run(walked["evaluate"])
    exp, note = ev.info.experiment_id, ev.data.tags["mlflow.note.content"]
    for run_id in (
        walked["index"]["run_id"],
        walked["best"]["tune_run_id"],
        walked["source"]["run_id"],
    ):
        assert f"]({run_page(exp, run_id)})" in note
    freeze_k = next(r for r in walked["index"]["runs"] if r["arm"] == "freeze_k")
    arm_note = client.get_run(freeze_k["run_id"]).data.tags["mlflow.note.content"]
    assert f"models/{walked['source']['model_id']})" in arm_note


def test_console_ends_with_report_path_and_run_url_not_a_json_dump(walked):
    lines = walked["console"].strip().splitlines()
    exp = MlflowClient().get_run(walked["evaluate"]).info.experiment_id
    assert lines[0].startswith("Transfer from ")
    text = "\n".join(lines[1:])
    assert "outputs/evaluate/report/report.html" in text
    assert f"http://127.0.0.1:5000/{run_page(exp, walked['evaluate'])}" in text
    assert runs_table(exp) in text and "mlflow ui --backend-store-uri sqlite:///" in text
    assert "{" not in walked["console"]


def test_optuna_dashboard_sees_metric_name_config_and_run_links(walked):
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    journal = walked["folder"] / "optuna-journal.log"
    study = optuna.load_study(
        study_name=walked["best"]["study"], storage=JournalStorage(JournalFileBackend(str(journal)))
    )
    assert study.metric_names == ["val_acc"]
    assert {"source", "target", "labels", "model"} <= set(study.user_attrs)
    for trial in study.trials:
        run_id = trial.user_attrs["mlflow_run_id"]
        assert trial.user_attrs["mlflow_run_url"].endswith(f"/runs/{run_id}")


def test_prepare_keeps_run_ids_out_of_the_domain_folders(workdir):
    """A target-only change leaves the source folder byte-identical (so DVC does not re-run
    pretrain); the run id sits beside the folders."""

    def snapshot(folder: Path) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}

    cfg = compose()
    write_params(workdir, cfg)
    prepare.run(cfg)
    before = snapshot(workdir / "outputs/prepare/source")
    first = json.loads((workdir / "outputs/prepare/mlflow.json").read_text())
    prepare.run(compose("data.target.val_per_class=10"))
    assert snapshot(workdir / "outputs/prepare/source") == before
    assert "mlflow.json" not in before
    second = json.loads((workdir / "outputs/prepare/mlflow.json").read_text())
    assert second["run_id"] != first["run_id"]
    assert second["source_sha256"] == first["source_sha256"]
    assert second["target_sha256"] != first["target_sha256"]


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def test_git_dirty_counts_code_not_the_files_dvc_rewrites(tmp_path):
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "params.yaml").write_text("a: 1\n")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "metrics.json").write_text("{}\n")
    (tmp_path / "out" / ".gitignore").write_text("")
    lock = {"schema": "2.0", "stages": {"s": {"outs": [{"path": "out/metrics.json"}]}}}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "c")
    (tmp_path / "params.yaml").write_text("a: 2\n")
    (tmp_path / "out" / "metrics.json").write_text('{"acc": 1}\n')
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({**lock, "changed": True}))
    (tmp_path / "out" / ".gitignore").write_text("/model\n")
    assert git_state(str(tmp_path))["graftlab.git_dirty"] == "false"
    (tmp_path / "code.py").write_text("x = 2\n")
    state = git_state(tmp_path)
    assert state["graftlab.git_dirty"] == "true"
    assert state["graftlab.git_dirty_files"] == "code.py"


def test_html_report_embeds_its_figures_and_tables(tmp_path):
    (tmp_path / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    page = render_html("# T\n\n| k | v |\n|---|---|\n| 1 | 2 |\n\n![a](a.png)\n", tmp_path)
    assert "<table>" in page and "<td>2</td>" in page
    assert 'src="data:image/png;base64,iVBORw0KGgpmYWtl"' in page
    assert "a.png" not in page.replace('alt="a"', "")


def test_headline_metrics_lead_and_details_keep_the_rest():
    flat = {"arms.x.test_acc": 0.5, "transfer_gain": 0.1, "scores.leep": -1.0, "ntg": -0.1}
    headline, details = split_metrics(flat)
    assert list(headline) == ["transfer_gain", "ntg"]
    assert details == {"arms.x.test_acc": 0.5, "scores.leep": -1.0}
    assert HEADLINE[0] == "transfer_gain"


def _dvc_yaml() -> dict:
    text = (REPO / "dvc.yaml").read_text().replace("${paths.", "${")
    return yaml.safe_load(text)


def test_dvc_plots_are_labelled_and_none_is_drawn_against_step():
    dvc = _dvc_yaml()
    assert all("plots" not in stage for stage in dvc["stages"].values()), "stage-level plots"
    builtin = {"simple", "linear", "confusion", "bar_horizontal", "scatter", "smooth"}
    for entry in dvc["plots"]:
        if isinstance(entry, str):
            assert entry.endswith(".png")
            continue
        ((title, spec),) = entry.items()
        assert spec["x"] != "step" and spec.get("x_label") and spec.get("y_label"), title
        assert spec["x_label"] not in {"step", "y"} and spec["y_label"] not in {"step", "y"}
        template = spec.get("template", "linear")
        assert template in builtin or (REPO / ".dvc/plots" / f"{template}.json").is_file()
    per_arm = json.loads((REPO / ".dvc/plots/by_arm.json").read_text())
    assert per_arm["encoding"]["color"]["field"] == "arm"


def test_dvc_plots_page_needs_no_network_and_only_evaluate_declares_metrics():
    config = (REPO / ".dvc/config").read_text()
    assert "html_template = plots/offline.html" in config
    page = (REPO / ".dvc/plots/offline.html").read_text()
    assert "{plot_divs}" in page and "{scripts}" not in page
    assert "<script src=" not in page and "vegaEmbed" in page
    assert "/dvc_plots/" in (REPO / ".gitignore").read_text().splitlines()
    declared = [name for name, stage in _dvc_yaml()["stages"].items() if "metrics" in stage]
    assert declared == ["evaluate"]


@pytest.mark.parametrize("every", [3600.0, 0.0], ids=["short-run", "long-run"])
def test_a_buffered_run_logger_writes_at_the_end_or_every_so_often(mlflow_store, every):
    # one write at the end of a short run; a long run's metrics reach the UI while it runs
    from pipeline.tracking.logger import run_logger

    client = MlflowClient(mlflow_store)
    exp = client.get_experiment_by_name("graftlab") or client.get_experiment(
        client.create_experiment("graftlab")
    )
    run = client.create_run(exp.experiment_id)
    logger = run_logger(mlflow_store, "graftlab", run.info.run_id, buffered=True, flush_every=every)
    logger.log_metrics({"val/acc": 0.5}, step=0)
    logger.log_metrics({"val/acc": 0.75}, step=1)
    history = client.get_metric_history(run.info.run_id, "val/acc")
    assert [m.value for m in history] == ([] if every else [0.5, 0.75])
    logger.finalize("success")
    history = client.get_metric_history(run.info.run_id, "val/acc")
    assert sorted((m.step, m.value) for m in history) == [(0, 0.5), (1, 0.75)]
