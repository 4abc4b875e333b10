"""What a finished study leaves behind: its best trial, a trials table and Optuna's own plots."""

from __future__ import annotations

import warnings
from collections.abc import Collection
from pathlib import Path

import optuna

from pipeline.jsonfile import write_json
from pipeline.tuning.space import Param
from pipeline.tuning.study import counts


def best_trial_summary(study: optuna.Study) -> dict:
    """The study's best trial: number, value, MLflow run and the config overrides it chose."""
    best = study.best_trial
    return {
        "best_trial": best.number,
        "best_value": best.value,
        "best_trial_run_id": best.user_attrs.get("mlflow_run_id"),
        "overrides": dict(best.params),
    }


def study_metrics(study: optuna.Study, best: dict) -> dict:
    """Counts by state and the best trial (trial durations are in trials.csv and MLflow: wall
    time would make the metrics differ between runs of the same commit)."""
    c = counts(study)
    return {
        "best_value": best.get("best_value"),
        "n_complete": c["COMPLETE"],
        "n_pruned": c["PRUNED"],
        "n_fail": c["FAIL"],
        "n_running": c["RUNNING"],
        "best_trial": best.get("best_trial"),
    }


def write_study(study: optuna.Study, params: list[Param], best: dict, folder: Path) -> dict:
    """``best.yaml``, ``trials.csv``, ``plots/`` and ``metrics.json`` into ``folder``; return the
    metrics."""
    import yaml

    (folder / "best.yaml").write_text(yaml.safe_dump(best, sort_keys=False))
    write_trials(study, folder / "trials.csv")
    plot_study(study, params, folder / "plots")
    metrics = study_metrics(study, best)
    write_json(folder / "metrics.json", metrics)
    describe_study_run(study, best)
    return metrics


def describe_study_run(study: optuna.Study, best: dict) -> None:
    """The active (parent) run's description, when one is active: what the study found, with
    links to the source model it tuned from and the best trial's run."""
    import mlflow

    from pipeline.tracking.links import describe
    from pipeline.tuning.display import metric_name, settings_text

    active = mlflow.active_run()
    if active is None:
        return
    tags = mlflow.get_run(active.info.run_id).data.tags
    c = counts(study)
    text = (
        f"Optuna study {study.study_name}: {len(study.trials)} trials ({c['COMPLETE']} complete, "
        f"{c['PRUNED']} pruned, {c['FAIL']} failed); best trial {best['best_trial']}, "
        f"{metric_name(study)} {best['best_value']:.4g}: {settings_text(best['overrides'])}."
    )
    links = {
        "source model": ("model", tags.get("graftlab.source_model_id")),
        "best trial run": ("run", best.get("best_trial_run_id")),
    }
    describe(active.info.experiment_id, text, links)


def log_settings(settings: dict, per_run: Collection[str]) -> None:
    """Record the ``tune`` settings in the active (parent) run: those that name the study as
    params, those each run or worker may set differently (``per_run``: more trials to extend the
    study, a timeout) as tags, which a re-opened run may overwrite (MLflow refuses to change a
    logged param)."""
    import mlflow

    from pipeline.tracking.lineage import flatten

    mlflow.log_params(flatten({"tune": {k: v for k, v in settings.items() if k not in per_run}}))
    tags = flatten({"tune": {k: v for k, v in settings.items() if k in per_run}})
    mlflow.set_tags({k: str(v) for k, v in tags.items()})


def write_disabled(folder: Path) -> dict:
    """What tuning switched off leaves: a ``best.yaml`` without overrides, a ``trials.csv``
    with a header and no trials, a ``plots`` folder with a note and no plots (not empty: DVC
    warns about an empty output); return the metrics."""

    import yaml

    (folder / "best.yaml").write_text(yaml.safe_dump({"enabled": False, "overrides": {}}))
    (folder / "trials.csv").write_text("number,value,state\n")
    (folder / "plots").mkdir()
    (folder / "plots" / "README.md").write_text("Tuning was off (tune.enabled=false): no plots.\n")
    metrics = {"enabled": False}
    write_json(folder / "metrics.json", metrics)
    return metrics


def write_trials(study: optuna.Study, path: Path) -> None:
    """Every trial with its state, params, duration and user attributes, as CSV."""
    df = study.trials_dataframe(
        attrs=("number", "value", "state", "params", "duration", "user_attrs")
    )
    df.to_csv(path, index=False)


def plot_study(study: optuna.Study, params: list[Param], folder: Path) -> None:
    """Optuna's own matplotlib plots: accuracy vs freeze depth, history, importances."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    folder.mkdir(parents=True, exist_ok=True)
    metric = (study.metric_names or ["Objective Value"])[0]  # optuna's plots ignore metric names
    plots = {"history.png": lambda: ovm.plot_optimization_history(study, target_name=metric)}
    keys = [p.key for p in params]
    if "transfer.freeze_groups" in keys:
        plots["freeze_groups.png"] = lambda: ovm.plot_slice(
            study, params=["transfer.freeze_groups"], target_name=metric
        )
    plots["importances.png"] = lambda: ovm.plot_param_importances(study)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, draw in plots.items():
            try:
                ax = draw()
            except (ValueError, RuntimeError):  # e.g. importances need >= 2 complete trials
                continue
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            fig.set_size_inches(7, 4)
            fig.tight_layout()
            fig.savefig(folder / name, dpi=100)
            plt.close(fig)
