"""Benchmark: a 20-trial study's wall time over one full fine-tune trial's, with/without caching,
pruning and vectorised ensembles (each trial trains ``tune.subsets`` paired seeds: one ensemble,
or one by one), with the configured pruner (hyperband) or ``tune/pruner=asha``. Not collected
by pytest; run after `dvc repro` (it reuses outputs/prepare and outputs/pretrain) from the
repository root:

    python tests/benchmarks/bench_tune.py [n_trials] [--pruner-seeds=N] [--trial-batches]
        [hydra overrides]

``--pruner-seeds=N`` then runs both pruners' studies with N sampler seeds and prints their epochs
and best validation accuracies, and the mean difference with its 95% interval (one seed's study
says little: which trials a pruner stops depends on the order TPE proposes them).

``--trial-batches`` then asks whether training several trials as one vectorised ensemble would
pay: what B trials' seeds cost as one ensemble per trial (each its own learning rates, no
pruning), and, for the default study's own trials over sampler seeds 0-2, the trial-epochs of
consecutive batches (a batch trains until its longest trial ends) and the freeze depths a batch
holds (trials of different depths cannot share one ensemble).

Every variant runs the tune stage's real objective (Lightning training, per-epoch pruning
reports, a nested MLflow run per trial) in this one process, against a throwaway MLflow store
and in-memory studies, so all timings come from the same machine and run.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import time

import optuna


def main(
    n_trials: int = 20,
    overrides: list[str] | None = None,
    pruner_seeds: int = 0,
    trial_batches: bool = False,
) -> None:
    tmp = tempfile.mkdtemp(prefix="graftlab-bench-")  # the throwaway MLflow store
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # runs left 60 of them in /tmp
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
    from stages._shell import apply_overrides, load_config, quiet_libraries, use_tracking

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
        caching: bool,
        pruning: str,
        n: int,
        fixed: dict | None = None,
        ensembles: bool = True,
        sampler_seed: int | None = None,
    ) -> tuple:
        """``pruning``: "on" (the configured pruner), "off" (``none``) or another
        ``conf/tune/pruner`` option; ``sampler_seed`` replaces ``tune.sampler.seed``."""
        option = {"off": "none"}.get(pruning, pruning)
        chosen = [] if option == "on" else [f"tune/pruner={option}"]
        seeded = [] if sampler_seed is None else [f"tune.sampler.seed={sampler_seed}"]
        run_cfg = apply_overrides(cfg, chosen + seeded)
        pruner = build.instantiate(run_cfg, "tune.pruner")
        s = optuna.create_study(  # a fixed name: Hyperband assigns brackets by name and number
            study_name="bench",
            direction="maximize",
            pruner=pruner,
            sampler=build.instantiate(run_cfg, "tune.sampler"),
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
        trials[:] = [
            (t.params.get("transfer.freeze_groups"), len(t.intermediate_values)) for t in s.trials
        ]
        return seconds, s.best_value, states.count("PRUNED"), epochs

    trials: list[tuple[int, int]] = []  # the last study's (freeze depth, epochs) per trial

    # warm-up (imports, first Trainer), not timed
    study(True, "on", 1)
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
    variants = [(False, "off", True), (True, "off", True), (False, "on", True)]
    variants += [(True, "on", False), (True, "on", True), (True, "asha", True)]
    for caching, pruning, ensembles in variants:
        refs += [study(False, "off", 1, fixed=full)[0] for _ in range(2)]
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
        name = f"caching={on[caching]}, pruning={pruning}, ensembles={on[ens]}"
        print(f"{name:<44}{seconds:>9.1f}{seconds / one:>7.2f}{best:>14.3f}{pruned:>8}{epochs:>8}")
    print(f"(goal: a {n_trials}-trial study <= 3x one full trial; a naive search is ~{n_trials}x)")
    if pruner_seeds:
        compare_pruners(study, pruner_seeds)
    if trial_batches:
        batch_cost(partial(train_arms, task=task, factory=factory, source=source), cfg, groups)
        print("default study's trials in consecutive batches (trial-epochs; depths per batch)")
        for seed in (0, 1, 2):
            study(True, "on", n_trials, sampler_seed=seed)
            print(f"  sampler seed {seed}: {batched(trials)}")


def batch_cost(train, cfg, groups: int, repeats: int = 4) -> None:
    """Per trial, what B trials' paired seeds cost trained as one ensemble, against one trial
    (each trial its own learning rates; no pruning)."""
    import dataclasses

    from pipeline.transfer.prefix_cache import PrefixCache
    from stages import _build as build

    arm_for, kwargs = build.trial_arm(cfg, groups), build.trainer_kwargs(cfg, False)
    rates = [(0.05, 0.01), (0.02, 0.005), (0.1, 0.02), (0.01, 0.003), (0.2, 0.05), (0.03, 0.008)]

    def run(b: int, k: int) -> float:
        arms = []
        for head, backbone in rates[:b]:
            values = {"transfer.freeze_groups": k, "transfer.head_lr": head}
            arm = arm_for({**values, "transfer.backbone_lr": backbone}, int(cfg.seed))
            for i in range(int(cfg.tune.subsets)):
                settings = dataclasses.replace(arm.settings, seed=int(cfg.seed) + i)
                arms.append(dataclasses.replace(arm, settings=settings))
        t0 = time.perf_counter()
        train(arms, trainer_kwargs=kwargs, cache=PrefixCache())
        return time.perf_counter() - t0

    for k in (0, 2):
        run(1, k), run(4, k)  # warm-up
        best = {b: min(run(b, k) for _ in range(repeats)) for b in (1, 2, 4, 6)}
        cells = ", ".join(f"B={b} {best[b] / best[1] / b:.2f}" for b in (2, 4, 6))
        print(f"k={k}: one trial {best[1]:.3f} s; per trial, B trials as one ensemble: {cells}")


def batched(trials: list[tuple[int, int]], sizes: tuple[int, ...] = (2, 4)) -> str:
    """Trial-epochs one by one and in consecutive batches of each size (a batch trains until its
    longest trial ends), and the freeze depths a batch holds on average."""
    alone = sum(e for _, e in trials)
    cells = [f"one by one {alone}"]
    for b in sizes:
        groups = [trials[i : i + b] for i in range(0, len(trials), b)]
        together = sum(max(e for _, e in g) * len(g) for g in groups)
        depths = sum(len({k for k, _ in g}) for g in groups) / len(groups)
        cells.append(f"batches of {b} {together} ({together / alone:.2f}x; {depths:.1f})")
    return ", ".join(cells)


def compare_pruners(study, n_seeds: int) -> None:
    """Hyperband (the configured pruner) against ``tune/pruner=asha`` over sampler seeds."""
    from pipeline.metrics.intervals import Interval

    print(f"\npruners over sampler seeds 0-{n_seeds - 1} (caching and ensembles on)")
    print(f"{'seed':>4}{'hyperband epochs':>18}{'best':>7}{'asha epochs':>13}{'best':>7}")
    epochs, best = {"on": [], "asha": []}, {"on": [], "asha": []}
    for seed in range(n_seeds):
        for pruner in ("on", "asha"):
            _, value, _, n = study(True, pruner, 20, sampler_seed=seed)
            epochs[pruner].append(n)
            best[pruner].append(value)
        print(
            f"{seed:>4}{epochs['on'][-1]:>18}{best['on'][-1]:>7.3f}"
            f"{epochs['asha'][-1]:>13}{best['asha'][-1]:>7.3f}"
        )
    ratio = sum(epochs["asha"]) / sum(epochs["on"])
    diff = Interval.of([a - h for a, h in zip(best["asha"], best["on"], strict=True)])
    print(
        f"asha: {ratio:.2f}x hyperband's epochs; best val acc asha - hyperband "
        f"{diff.mean:+.3f} (95% CI {diff.low:+.3f} to {diff.high:+.3f})"
    )


if __name__ == "__main__":
    args = sys.argv[1:]
    flags = [a for a in args if a.startswith("--pruner-seeds=")]
    rest = [a for a in args if a not in flags and a != "--trial-batches"]
    n = int(rest.pop(0)) if rest and rest[0].isdigit() else 20
    main(n, rest, int(flags[-1].split("=", 1)[1]) if flags else 0, "--trial-batches" in args)
