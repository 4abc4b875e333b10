"""tune: an Optuna study decides how many layer groups to freeze and the learning rates.

Reads params: seed, data.labels_per_class, model, trainer, tune, transfer, paths;
<paths.prepare>/target, <paths.pretrain>/model.
Writes <paths.tune>/best.yaml (the best trial's config overrides, read by transfer), trials.csv,
plots/*.png and metrics.json.

Trials train the primary arm on the seed's labelled target subsets, scored on the target
validation split only; transductively (stages/_setting.py) on no target label, by the unsupervised
validator. The study lives in ``tune.storage`` (default: <repo>/optuna-journal.log), so a killed
run resumes, and N workers (processes or machines) share one study. Every trial is a nested MLflow
run under one parent run per study.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from pipeline.errors import ConfigError
from pipeline.tracking.lineage import stage_tags
from pipeline.tracking.store import repo_root
from pipeline.transfer.prefix_cache import PrefixCache
from pipeline.transfer.source import SourceModel
from pipeline.transfer.train import train_arms
from pipeline.tuning.display import describe_study, quiet_optuna, short_overrides, watched
from pipeline.tuning.objective import trial_objective
from pipeline.tuning.report import best_trial_summary, log_settings, write_disabled, write_study
from pipeline.tuning.space import Param, parse_space
from pipeline.tuning.storage import open_storage, redact
from pipeline.tuning.study import open_study, parent_run, run_trials, settle, study_name
from stages import _build as build
from stages import _setting as setting
from stages._files import Layout
from stages._shell import check_config, explicit, run_stage, stage_output, use_tracking

STAGE = "tune"
JOURNAL = "optuna-journal.log"
# tune keys that do not change what a trial computes (budget, storage, naming)
NOT_HASHED = {"n_trials", "timeout", "storage", "max_failures", "heartbeat_interval"}
NOT_HASHED |= {"grace_period", "study_name", "enabled"}
# trainer keys that change how trials run, not their results (ensembles: float tolerance)
TRAINER_HOW = {"enable_progress_bar", "ensembles"}
UNSEARCHED = {"run", "seeds", "epochs", "baseline"}  # transfer keys trials do not read


def validate(cfg: DictConfig, groups: int) -> list[Param]:
    """Check the config before any trial starts; return the search space."""
    check_config(cfg, STAGE)
    params = parse_space(OmegaConf.to_container(cfg.tune.space, resolve=True), groups)
    for p in params:
        value = OmegaConf.select(cfg, p.key, default="__missing__")
        if value == "__missing__":
            allowed = "an existing config key (a tuned parameter sets that key in each trial)"
            raise ConfigError(f"tune.space.{p.key}", p.key, allowed)
        if explicit(p.key):  # the study would silently replace it in every trial
            allowed = f"no value: tune.space searches it (keep it fixed: ~tune.space.{p.key})"
            raise ConfigError(p.key, value, allowed)
    build.arm_names(cfg)
    return params


def make_study(cfg: DictConfig, params: list[Param], weights_id: str, target_sha: str):
    """Open the study named by a digest of everything a trial's result depends on."""
    t = cfg.tune
    skip = UNSEARCHED | {p.key.removeprefix("transfer.") for p in params}
    sections = ("transfer", "tune", "trainer")  # trainer: device, precision, threads
    transfer, tune, trainer = (OmegaConf.to_container(cfg[k], resolve=True) for k in sections)
    identity = {
        "source": weights_id,
        "target": target_sha,
        "labels": cfg.data.labels_per_class,
        "val": cfg.data.get("val_per_class"),
        "seed": cfg.seed,
        "tune": {k: v for k, v in tune.items() if k not in NOT_HASHED},
        "transfer": {k: v for k, v in transfer.items() if k not in skip},
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "trainer": {k: v for k, v in trainer.items() if k not in TRAINER_HOW},
    }
    if setting.transductive(cfg):  # the inductive identity (and study name) stays as it was
        identity["setting"] = OmegaConf.to_container(cfg.setting, resolve=True)
    journal = repo_root(Path.cwd()) / JOURNAL
    storage = open_storage(
        t.storage, journal, heartbeat_interval=t.heartbeat_interval, grace_period=t.grace_period
    )
    sampler, pruner = (build.instantiate(cfg, f"tune.{k}") for k in ("sampler", "pruner"))
    study = open_study(study_name(t.study_name, identity), storage, sampler, pruner)
    return describe_study(study, identity, setting.tune_monitor(cfg).replace("/", "_"))


def run(cfg: DictConfig) -> dict:
    paths = Layout.of(cfg)
    if not cfg.tune.enabled:  # transfer then uses the conf values as they are
        with stage_output(paths.tune) as out:
            metrics = write_disabled(out)
        print("tune: off (tune.enabled=false): transfer trains with the config's values")
        return metrics
    import mlflow  # MLflow and Lightning load only when a study runs (start-up)

    from pipeline.tracking.logger import run_logger

    groups = build.num_groups(factory := build.model_factory(cfg))
    params = validate(cfg, groups)
    task = setting.target_task(cfg, paths)  # transductive: no target label in it
    task.check(build.trial_arm(cfg, groups)({}, int(cfg.seed)), "transfer.arms")
    source = SourceModel.load(paths.source_model)
    quiet_optuna()
    study = make_study(cfg, params, source.weights_id, task.target.card()["sha256"])
    uri, experiment_id = use_tracking(cfg)
    tags = {
        **stage_tags(STAGE, "."),
        "graftlab.source_model_id": source.ids["model_id"],
        "optuna.study": study.study_name,
    }
    fit_kwargs = {"trainer_kwargs": build.trainer_kwargs(cfg, False), "cache": PrefixCache()}
    fit_kwargs["vectorise"] = build.ensembles(cfg)  # the seeds of a trial as one ensemble
    train = partial(train_arms, task=task, factory=factory, source=source, **fit_kwargs)
    logger_for = partial(
        run_logger, uri, cfg.tracking.experiment, buffered=True, flush_on_finalize=False
    )
    t = cfg.tune
    with parent_run(study, experiment_id, f"{STAGE}:{study.study_name}", tags) as parent:
        storage = redact(t.storage or JOURNAL)  # never a database password, here or in best
        log_settings(OmegaConf.to_container(t, resolve=True) | {"storage": storage}, NOT_HASHED)
        seeds = [int(cfg.seed) + i for i in range(t.subsets)]
        arm_for, train = build.trial_arm(cfg, groups), setting.scored(cfg, task, train)
        monitor = setting.tune_monitor(cfg)
        objective = trial_objective(params, arm_for, seeds, train, logger_for, tags, monitor)
        with watched(study, objective, t.n_trials, (uri, experiment_id)) as objective:
            run_trials(study, objective, t.n_trials, max_failures=t.max_failures, timeout=t.timeout)
        settle(study)  # best.yaml is the study's best, whichever worker finishes last
        try:
            best = best_trial_summary(study)
        except ValueError as err:
            allowed = "enough trials for at least one to complete"
            raise ConfigError("tune.n_trials", t.n_trials, allowed) from err
        where = {"study": study.study_name, "storage": storage}
        best = {"enabled": True, **where, "tune_run_id": parent.info.run_id, **best}
        best["base"] = {p.key: OmegaConf.select(cfg, p.key) for p in params}  # tuned_config
        with stage_output(paths.tune) as out:
            metrics = write_study(study, params, best, out)
            mlflow.log_metrics({f"study/{k}": v for k, v in metrics.items() if v is not None})
            mlflow.log_artifacts(str(out), artifact_path="tune")
    print(
        f"tune: study {study.study_name}, best trial {best['best_trial']} "
        f"{study.metric_names[0]} {best['best_value']:.3f}: "
        f"{short_overrides(best['overrides'])}"
    )
    return metrics


def main() -> None:
    run_stage(STAGE, run)


if __name__ == "__main__":
    main()
