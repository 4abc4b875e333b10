"""What the evaluate run records: its config, the test split, the models it scored, the summary
and the report, with links back to the runs it builds on."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pipeline.tracking.datasets import SplitDataset, split_dataset
from pipeline.tracking.lineage import flatten
from pipeline.tracking.links import describe, run_page, runs_table, ui_command, url


def log_evaluation_inputs(
    params: dict, config_yaml: str, dataset: str, card: dict, split: str, data_path: Path
) -> SplitDataset:
    """Params, resolved config and the test split (an ``evaluation`` dataset input) of the active
    run; return the test dataset (for the per-model score runs).

    Args:
        params: The config sections the stage reads (flattened into params).
        config_yaml: The resolved config, logged as ``config.yaml``.
        dataset: Target dataset name.
        card: Its data card (``splits.<split>.sha256`` and ``size``).
        split: The split scored (``test``).
        data_path: The prepared target arrays.
    """
    import mlflow

    mlflow.log_params(flatten(params))
    mlflow.log_text(config_yaml, "config.yaml")
    info = card["splits"][split]
    ds = split_dataset(dataset, split, info["sha256"], data_path, info["size"])
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
    index: dict, tune_run_id: str | None, source_ids: dict, prepare: dict, target_sha256: str
) -> dict[str, tuple[str, str | None]]:
    """Links of the evaluate run's description: the runs and model its inputs came from.

    Args:
        index: The transfer stage's index (``run_id``).
        tune_run_id: The study's run, if tuning ran.
        source_ids: The source model's ids (``run_id``, ``model_id``).
        prepare: The prepare stage's ids (``run_id``, ``target_sha256``); linked only when its
            target digest is the one evaluated.
        target_sha256: Digest of the target data evaluated.
    """
    same_data = prepare.get("target_sha256") == target_sha256
    return {
        "transfer run (arms and their models)": ("run", index.get("run_id")),
        "tune run (settings)": ("run", tune_run_id),
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
