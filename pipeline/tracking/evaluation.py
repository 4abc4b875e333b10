"""What the evaluate run records: its config, the test split, the models it scored, the summary
and the report, with links back to the runs it builds on."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pipeline.data.domain import Domain
from pipeline.tracking.datasets import SplitDataset, split_dataset
from pipeline.tracking.lineage import flatten
from pipeline.tracking.links import describe, run_page, runs_table, ui_command, url


def log_evaluation_inputs(
    config: dict, target: Domain, data_path: Path, split: str = "test"
) -> SplitDataset:
    """Params and ``config.yaml`` from the resolved config, and the scored split (an
    ``evaluation`` dataset input) of the active run; return that dataset (for the score runs).

    Args:
        config: The resolved config (flattened into params, and logged as ``config.yaml``).
        target: The target domain.
        data_path: Where its prepared arrays are.
        split: The split scored.
    """
    import mlflow
    import yaml

    mlflow.log_params(flatten(config))
    mlflow.log_text(yaml.safe_dump(config, sort_keys=False), "config.yaml")
    info = target.card()["splits"][split]
    ds = split_dataset(target.name, split, info["sha256"], data_path, info["size"])
    mlflow.log_input(ds, context="evaluation", tags={"sha256": info["sha256"], "split": split})
    return ds


def log_evaluation_results(
    metrics: Mapping[str, object],
    verdict: str,
    report_dir: Path,
    summary: str,
    links: Mapping[str, tuple[str, str | None]],
) -> None:
    """The evaluate run's summary metrics (on the run, not on a model), verdict, report folder
    (``report.html`` renders in the artifact viewer) and description with lineage links.

    Args:
        metrics: Flat metrics; booleans are logged as 0/1, None (non-finite) values are left out.
        verdict: positive / negative / inconclusive.
        report_dir: Folder logged under ``report/``.
        summary: The verdict paragraph (first lines of the description).
        links: ``label -> ("run" | "model", id)`` for the description.
    """
    import mlflow

    run = mlflow.active_run().info
    logged = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
    mlflow.log_metrics(logged)
    mlflow.set_tag("graftlab.verdict", verdict)
    text = f"{summary}\n\nReport: artifacts `report/report.html` (rendered) and `report/report.md`."
    describe(run.experiment_id, text, links)
    mlflow.log_artifacts(str(report_dir), artifact_path="report")


def evaluation_links(
    index: dict, best: dict, source_ids: dict, prepare: dict, target: Domain
) -> dict[str, tuple[str, str | None]]:
    """Links of the evaluate run's description: the runs and model its inputs came from.

    Args:
        index: The transfer stage's index (``run_id``).
        best: The tune stage's best.yaml (``tune_run_id`` when tuning ran).
        source_ids: The source model's ids (``run_id``, ``model_id``).
        prepare: The prepare stage's ids (``run_id``, ``target_sha256``); linked only when its
            target digest is the one evaluated.
        target: The target domain evaluated.
    """
    same_data = prepare.get("target_sha256") == target.card()["sha256"]
    return {
        "transfer run (arms and their models)": ("run", index.get("run_id")),
        "tune run (settings)": ("run", best.get("tune_run_id")),
        "pretrain run": ("run", source_ids.get("run_id")),
        "source model": ("model", source_ids.get("model_id")),
        "prepare run (data)": ("run", prepare.get("run_id") if same_data else None),
    }


def where_to_look(report_dir: Path, tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """The console's last words: where the report is and how to open the run in MLflow."""
    lines = [
        f"Report:  {report_dir / 'report.html'}  (also report.md)",
        f"MLflow:  {url(tracking_uri, run_page(experiment_id, run_id))}",
        f"         all runs: {url(tracking_uri, runs_table(experiment_id))}",
    ]
    if command := ui_command(tracking_uri):
        lines.append(f"         start the UI first: {command}")
    return "\n".join(lines)
