"""What a person sees of a study: names and links in optuna-dashboard, a short console line.

optuna-dashboard shows the objective as "Objective 0" and the study as a bare
``graftlab-<hash>`` unless told more: the study gets its metric name and a summary of what its
name hashes (source model, target data, label budget, model, searched keys) as user attributes,
and each trial its MLflow run's address (a user attribute, and a markdown note with a link when
optuna-dashboard is installed: the dashboard renders notes, not attributes, as links).
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import optuna

from pipeline.progress import bar
from pipeline.tracking.links import run_page, url
from pipeline.tuning.study import counts

METRIC = "val_acc"  # the inductive objective; transductively the validator's (``val_im``)


def quiet_optuna() -> None:
    """Keep Optuna's per-trial INFO lines (every parameter of every trial) off the console."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def describe_study(
    study: optuna.Study, summary: Mapping[str, object], metric: str = METRIC
) -> optuna.Study:
    """Name the objective ``metric`` (what the trials return: ``val_acc``, or the validator's
    ``val_im``; trials.csv's value column and the plots' axis take it) and record ``summary`` as
    study user attributes; return the study."""
    with warnings.catch_warnings():  # experimental since Optuna 3.2, still the only way
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([metric])
    for key, value in summary.items():
        if study.user_attrs.get(key) != value:
            study.set_user_attr(key, value)
    return study


def link_trial(trial: optuna.Trial, run_id: str, url: str) -> None:
    """Record the trial's MLflow run: ``mlflow_run_url`` attribute, and a dashboard note."""
    trial.set_user_attr("mlflow_run_url", url)
    if importlib.util.find_spec("optuna_dashboard") is not None:
        from optuna_dashboard import save_note

        save_note(trial, f"MLflow run: [{run_id}]({url})")


def metric_name(study: optuna.Study) -> str:
    """The name :func:`describe_study` gave the objective (:data:`METRIC` if it gave none)."""
    return (study.metric_names or [METRIC])[0]


def settings_text(values: Mapping[str, object]) -> str:
    """``transfer.freeze_groups=1, transfer.head_lr=0.02392``: full keys, 4 significant digits
    (run descriptions; the console's shorter form is :func:`short_overrides`)."""
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
    )


def best_so_far(study: optuna.Study) -> str:
    """``best val_acc 0.790 (trial 5)`` (the study's metric name), or an empty string before any
    trial completed."""
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not done:
        return ""
    best = max(done, key=lambda t: t.value)
    return f"best {metric_name(study)} {best.value:.3f} (trial {best.number})"


def short_overrides(overrides: Mapping[str, object]) -> str:
    """``freeze_groups=3 head_lr=0.00968 ...``: keys without their section, 3 significant digits."""
    parts = []
    for key, value in overrides.items():
        shown = f"{value:.3g}" if isinstance(value, float) else str(value)
        parts.append(f"{key.rpartition('.')[2]}={shown}")
    return " ".join(parts)


@contextmanager
def watched(
    study: optuna.Study,
    objective: Callable[[Any], float],
    n_trials: int,
    tracking: tuple[str, str],
) -> Iterator[Callable[[Any], float]]:
    """``objective`` with a progress bar over the trials still to run (on a terminal) and each
    trial linked to its MLflow run (``mlflow_run_id`` user attribute -> :func:`link_trial`) in
    ``tracking`` = (tracking URI, experiment id)."""
    uri, experiment_id = tracking
    c = counts(study)
    with bar("tune", max(0, n_trials - c["COMPLETE"] - c["PRUNED"])) as b:

        def run(trial: Any) -> float:
            if b.visible:  # reading every trial back costs a storage round trip
                b.status(f"trial {trial.number}  {best_so_far(study)}")
            try:
                return objective(trial)
            finally:
                run_id = trial.user_attrs.get("mlflow_run_id")
                if run_id:
                    link_trial(trial, run_id, url(uri, run_page(experiment_id, run_id)))
                b.advance()

        yield run
