"""tune: an Optuna study decides how many layer groups to freeze and the learning rates.

Reads params: seed, data.labels_per_class, model, trainer, tune, transfer;
outputs/prepare/target, outputs/pretrain/model.
Writes outputs/tune/best.yaml (the best trial's config overrides, read by transfer),
outputs/tune/trials.csv, outputs/tune/plots/*.png and outputs/tune/metrics.json.

Trials train the primary arm on the seed's labelled target subset and are scored on the target
validation split only (never test). The study lives in ``tune.storage`` (default: an Optuna
journal file at <repo>/optuna-journal.log, outside outputs/), so a killed run resumes when started
again, and ``python -m stages.tune`` started N times (processes or machines) shares one study.
Every trial is a nested MLflow run under one parent run per study.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from pathlib import Path

import mlflow
import yaml
from omegaconf import DictConfig, OmegaConf

from pipeline.data.store import load_domain
from pipeline.errors import ConfigError
from pipeline.tracking.lineage import flatten, stage_tags
from pipeline.tracking.logger import run_logger
from pipeline.tracking.store import repo_root
from pipeline.transfer.prefix_cache import PrefixCache
from pipeline.tuning.space import Param, parse_space
from pipeline.tuning.storage import open_storage, redact
from pipeline.tuning.study import counts, run_trials
from stages import _build as build
from stages._shell import OUTPUTS, run_stage, stage_output, use_tracking, write_json
from stages._target import Source, train_arm

STAGE = "tune"
JOURNAL = "optuna-journal.log"
PARENT_ATTR = "mlflow_parent_run_id"
NOT_HASHED = {
    "n_trials",
    "timeout",
    "storage",
    "max_failures",
    "heartbeat_interval",
    "grace_period",
    "study_name",
    "enabled",
}


def validate(cfg: DictConfig, groups: int) -> list[Param]:
    """Check the tune section before any trial starts; return the search space."""
    if int(cfg.tune.n_trials) < 1:
        raise ConfigError("tune.n_trials", cfg.tune.n_trials, "an integer >= 1")
    if int(cfg.tune.epochs) < 1:
        raise ConfigError("tune.epochs", cfg.tune.epochs, "an integer >= 1")
    params = parse_space(OmegaConf.to_container(cfg.tune.space, resolve=True), groups)
    for p in params:
        if OmegaConf.select(cfg, p.key, default="__missing__") == "__missing__":
            raise ConfigError(
                f"tune.space.{p.key}",
                p.key,
                "an existing config key (a tuned parameter sets that key in each trial's config)",
            )
    build.arm_names(cfg)
    return params


def study_name(cfg: DictConfig, source: Source, target_sha: str, params: list[Param]) -> str:
    """``<tune.study_name>-<hash>`` of everything trials depend on (but not the budget), so
    re-running resumes the same study and any change of data, model or space starts a new one."""
    searched = {p.key.removeprefix("transfer.") for p in params}
    transfer = {
        k: v
        for k, v in OmegaConf.to_container(cfg.transfer, resolve=True).items()
        if k not in searched | {"run", "seeds", "epochs", "baseline"}
    }
    tune = {
        k: v
        for k, v in OmegaConf.to_container(cfg.tune, resolve=True).items()
        if k not in NOT_HASHED
    }
    blob = json.dumps(
        {
            "source": source.weights_id,
            "target": target_sha,
            "labels": cfg.data.labels_per_class,
            "seed": cfg.seed,
            "tune": tune,
            "transfer": transfer,
            "model": OmegaConf.to_container(cfg.model, resolve=True),
        },
        sort_keys=True,
    )
    return f"{cfg.tune.study_name}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


def make_study(cfg: DictConfig, name: str):
    import optuna

    from stages._build import instantiate

    t = cfg.tune
    storage = open_storage(
        t.storage,
        repo_root(Path.cwd()) / JOURNAL,
        heartbeat_interval=t.heartbeat_interval,
        grace_period=t.grace_period,
    )
    return optuna.create_study(
        study_name=name,
        storage=storage,
        direction="maximize",
        load_if_exists=True,
        sampler=instantiate(cfg, "tune.sampler"),
        pruner=instantiate(cfg, "tune.pruner"),
    )


def parent_run(study, experiment_id: str, tags: dict) -> mlflow.ActiveRun:
    """Start, or re-open when resuming or joining, the study's parent MLflow run."""
    from mlflow import MlflowClient

    run_id = study.user_attrs.get(PARENT_ATTR)
    if run_id:
        try:
            MlflowClient().get_run(run_id)
            return mlflow.start_run(run_id=run_id)
        except mlflow.exceptions.MlflowException:
            pass  # the study outlived its MLflow store: start a new parent
    active = mlflow.start_run(
        run_name=f"{STAGE}:{study.study_name}", experiment_id=experiment_id, tags=tags
    )
    study.set_user_attr(PARENT_ATTR, active.info.run_id)
    return active


def objective_for(
    cfg, params, target, source, groups, uri, prefix_caching: bool = True, run_tags=None
):
    from optuna_integration import PyTorchLightningPruningCallback

    cache = PrefixCache()
    run_tags = {"graftlab.stage": STAGE, **(run_tags or {})}
    primary, labels = cfg.transfer.primary, int(cfg.data.labels_per_class)

    def objective(trial) -> float:
        values = {p.key: p.suggest(trial) for p in params}
        trial_cfg = cfg.copy()
        for key, value in values.items():
            OmegaConf.update(trial_cfg, key, value)
        arm = build.arm(trial_cfg, primary, groups, int(cfg.seed))
        arm = dataclasses.replace(
            arm, settings=dataclasses.replace(arm.settings, epochs=int(cfg.tune.epochs))
        )
        child = mlflow.start_run(
            run_name=f"trial-{trial.number}",
            nested=True,
            tags={**run_tags, "optuna.trial": str(trial.number)},
        )
        trial.set_user_attr("mlflow_run_id", child.info.run_id)
        # One buffered logger carries the trial's params, per-epoch metrics, result and state:
        # a trial costs one MLflow write besides starting and ending its run.
        logger = run_logger(
            uri, cfg.tracking.experiment, child.info.run_id, buffered=True, flush_on_finalize=False
        )
        logger.log_hyperparams({"trial": trial.number, **values})
        status, state = "FAILED", "FAIL"
        try:
            result = train_arm(
                trial_cfg,
                arm,
                target,
                source,
                labels,
                cache=cache,
                logger=logger,
                callbacks=(PyTorchLightningPruningCallback(trial, monitor="val/acc"),),
                prefix_caching=prefix_caching,
            )
            logger.log_metrics(
                {
                    "best/val_acc": result.best_val_acc,
                    "best/epoch": result.best_epoch,
                    "seconds": result.seconds,
                }
            )
            status, state = "FINISHED", "COMPLETE"
            return result.best_val_acc
        except BaseException as err:
            if type(err).__name__ == "TrialPruned":
                status, state = "KILLED", "PRUNED"
            raise
        finally:
            logger.set_tags({"optuna.state": state})
            logger.flush()
            mlflow.end_run(status)

    return objective


def write_outputs(out: Path, study, params: list[Param], best: dict) -> dict:
    from optuna.trial import TrialState

    (out / "best.yaml").write_text(yaml.safe_dump(best, sort_keys=False))
    df = study.trials_dataframe(
        attrs=("number", "value", "state", "params", "duration", "user_attrs")
    )
    df.to_csv(out / "trials.csv", index=False)
    plot_study(study, params, out / "plots")
    c = counts(study)
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    return {
        "best_value": best.get("best_value"),
        "n_complete": c["COMPLETE"],
        "n_pruned": c["PRUNED"],
        "n_fail": c["FAIL"],
        "n_running": c["RUNNING"],
        "best_trial": best.get("best_trial"),
        "mean_trial_seconds": (sum(t.duration.total_seconds() for t in done) / len(done))
        if done
        else None,
    }


def plot_study(study, params: list[Param], folder: Path) -> None:
    """Optuna's own matplotlib plots: accuracy vs freeze depth, history, importances."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    folder.mkdir(parents=True, exist_ok=True)
    plots = {"history.png": lambda: ovm.plot_optimization_history(study)}
    keys = [p.key for p in params]
    if "transfer.freeze_groups" in keys:
        plots["freeze_groups.png"] = lambda: ovm.plot_slice(
            study, params=["transfer.freeze_groups"]
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


def run(cfg: DictConfig) -> dict:
    if not cfg.tune.enabled:
        with stage_output(STAGE) as out:
            (out / "best.yaml").write_text(yaml.safe_dump({"enabled": False, "overrides": {}}))
            (out / "trials.csv").write_text("")
            (out / "plots").mkdir()
            write_json(out / "metrics.json", {"enabled": False})
        return {"enabled": False}
    groups = build.num_groups(build.model_factory(cfg))
    params = validate(cfg, groups)
    target = load_domain(OUTPUTS / "prepare" / "target")
    source = Source(OUTPUTS / "pretrain" / "model")
    study = make_study(cfg, study_name(cfg, source, target.card()["sha256"], params))
    uri, experiment_id = use_tracking(cfg)
    tags = {
        **stage_tags(STAGE, "."),
        "graftlab.source_model_id": source.ids["model_id"],
        "optuna.study": study.study_name,
    }
    with parent_run(study, experiment_id, tags) as parent:
        mlflow.log_params(flatten({"tune": OmegaConf.to_container(cfg.tune, resolve=True)}))
        run_trials(
            study,
            objective_for(cfg, params, target, source, groups, uri, run_tags=tags),
            int(cfg.tune.n_trials),
            max_failures=int(cfg.tune.max_failures),
            timeout=cfg.tune.timeout,
        )
        try:
            best_trial = study.best_trial
        except ValueError as err:
            raise ConfigError(
                "tune.n_trials", cfg.tune.n_trials, "enough trials for at least one to complete"
            ) from err
        best = {
            "enabled": True,
            "study": study.study_name,
            "storage": redact(cfg.tune.storage or JOURNAL),
            "tune_run_id": parent.info.run_id,
            "best_trial": best_trial.number,
            "best_value": best_trial.value,
            "best_trial_run_id": best_trial.user_attrs.get("mlflow_run_id"),
            "overrides": dict(best_trial.params),
        }
        with stage_output(STAGE) as out:
            metrics = write_outputs(out, study, params, best)
            write_json(out / "metrics.json", metrics)
            mlflow.log_metrics({f"study/{k}": v for k, v in metrics.items() if v is not None})
            mlflow.log_artifacts(str(out), artifact_path="tune")
    print(
        f"study {study.study_name}: best trial {best['best_trial']} val acc "
        f"{best['best_value']:.4f} with {best['overrides']}"
    )
    return metrics


def main() -> None:
    run_stage(STAGE, run)


if __name__ == "__main__":
    main()
