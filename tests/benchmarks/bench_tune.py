"""Benchmark: a 20-trial study's wall time over one full fine-tune trial's, with/without caching,
pruning and vectorised ensembles (each trial trains ``tune.subsets`` paired seeds: one ensemble,
or one by one). Not collected by pytest; run after `dvc repro` (it reuses outputs/prepare and
outputs/pretrain) from the repository root:

    python tests/benchmarks/bench_tune.py [n_trials] [hydra overrides, e.g. tune.epochs=10]

Every variant runs the tune stage's real objective (Lightning training, per-epoch pruning
reports, a nested MLflow run per trial) in this one process, against a throwaway MLflow store
and in-memory studies, so all timings come from the same machine and run.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import optuna


def main(n_trials: int = 20, overrides: list[str] | None = None) -> None:
    tmp = tempfile.mkdtemp(prefix="graftlab-bench-")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
    from functools import partial

    import mlflow

    from pipeline.data.store import load_domain
    from pipeline.tracking.logger import run_logger
    from pipeline.transfer.prefix_cache import PrefixCache
    from pipeline.transfer.source import SourceModel
    from pipeline.transfer.train import train_arms
    from pipeline.tuning.objective import trial_objective
    from pipeline.tuning.study import run_trials
    from stages import _build as build
    from stages import tune
    from stages._files import Layout
    from stages._shell import load_config, quiet_libraries, use_tracking

    quiet_libraries()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = load_config(overrides or [])
    uri, exp = use_tracking(cfg)
    paths = Layout.of(cfg)
    target = load_domain(paths.domain("target"))
    source = SourceModel.load(paths.source_model)
    factory = build.model_factory(cfg)
    groups = build.num_groups(factory)
    params = tune.validate(cfg, groups)
    task = build.target_task(cfg, target)
    seeds = [int(cfg.seed) + i for i in range(int(cfg.tune.subsets))]
    logger_for = partial(
        run_logger, uri, cfg.tracking.experiment, buffered=True, flush_on_finalize=False
    )

    def study(
        caching: bool, pruning: bool, n: int, fixed: dict | None = None, ensembles: bool = True
    ) -> tuple:
        pruner = build.instantiate(cfg, "tune.pruner") if pruning else optuna.pruners.NopPruner()
        s = optuna.create_study(  # a fixed name: Hyperband assigns brackets by name and number
            study_name="bench",
            direction="maximize",
            pruner=pruner,
            sampler=build.instantiate(cfg, "tune.sampler"),
        )
        if fixed:
            s.enqueue_trial(fixed)
        train = partial(
            train_arms,
            task=task,
            factory=factory,
            source=source,
            trainer_kwargs=build.trainer_kwargs(cfg, False),
            cache=PrefixCache(),
            prefix_caching=caching,
            vectorise=ensembles,
        )
        tags = {"graftlab.stage": "bench"}
        arm_for = build.trial_arm(cfg, groups)
        objective = trial_objective(params, arm_for, seeds, train, logger_for, tags)
        with mlflow.start_run(experiment_id=exp, run_name="bench"):
            t0 = time.perf_counter()
            run_trials(s, objective, n, max_failures=n)
            seconds = time.perf_counter() - t0
        states = [t.state.name for t in s.trials]
        epochs = sum(len(t.intermediate_values) for t in s.trials)
        return seconds, s.best_value, states.count("PRUNED"), epochs

    # warm-up (imports, first Trainer), not timed
    study(True, True, 1)
    full = {
        p.key: (
            0
            if p.key == "transfer.freeze_groups"
            else (p.low * p.high) ** 0.5
            if p.log
            else (p.low + p.high) / 2
        )
        for p in params
    }
    # The reference trial runs before every variant (this machine's speed drifts); each ratio
    # divides by the fastest of all of them.
    refs, rows = [], []
    variants = [(False, False, True), (True, False, True), (False, True, True)]
    variants += [(True, True, False), (True, True, True)]
    for caching, pruning, ensembles in variants:
        refs += [study(False, False, 1, fixed=full)[0] for _ in range(2)]
        rows.append(
            ((caching, pruning, ensembles), study(caching, pruning, n_trials, None, ensembles))
        )
    one = min(refs)
    print(
        f"one full fine-tune trial (k=0, {cfg.tune.epochs} epochs, its {len(seeds)} seeds as one "
        f"ensemble): {one:.2f} s"
    )
    header = f"{'variant':<44}{'study s':>9}{'ratio':>7}{'best val acc':>14}"
    print(f"{header}{'pruned':>8}{'epochs':>8}")
    on = {True: "on", False: "off"}
    for (caching, pruning, ens), (seconds, best, pruned, epochs) in rows:
        name = f"caching={on[caching]}, pruning={on[pruning]}, ensembles={on[ens]}"
        print(f"{name:<44}{seconds:>9.1f}{seconds / one:>7.2f}{best:>14.3f}{pruned:>8}{epochs:>8}")
    print(f"(goal: a {n_trials}-trial study <= 3x one full trial; a naive search is ~{n_trials}x)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20, sys.argv[2:])
