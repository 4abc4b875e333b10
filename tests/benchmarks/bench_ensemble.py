"""Benchmark: what one more paired seed costs. Not collected by pytest:

    python tests/benchmarks/bench_ensemble.py [S] [--compile]

1. How to vectorise S members (S=10 by default): one wide network with grouped convolutions
   (what :mod:`pipeline.transfer.widen` does), ``torch.func.vmap`` + ``functional_call`` over
   stacked parameters, or a plain loop over the members; a training step at the transfer
   stage's batch (8 per member) and a validation pass (200 images), against one model.
2. S paired seeds of one arm through :func:`pipeline.transfer.fit.fit_ensemble` against one seed
   through the same function, at the transfer stage's setting (1 label per class, batch 8, 40
   epochs, validation every epoch), for a fine-tuned (k=0), a frozen-prefix (k=2) and a
   linear-probe (k=4) arm, and with the members run one after another in the same loop.
3. The floors under the k=0 and k=2 ratios: the arithmetic of the S members' validation passes,
   then also of their training steps, with no training loop around them.

With ``--compile``, only part 1, then what ``torch.compile`` does to its training steps (one
model and the wide network): the seconds it takes to compile and the compiled / eager step time.

Round-robin runs (best of 25) for the passes, interleaved fits (best of five) for the fits, in
one process; on a shared machine the numbers are rough.
Under the stages' OpenMP wait policy (a short spin, then sleep, unless ``OMP_WAIT_POLICY`` is
set; see ``bench_wait_policy.py``).
"""

from __future__ import annotations

import copy
import sys
import time

import pipeline  # noqa: F401  first: OpenMP's wait policy as in the stages (before torch)

# isort: split

import torch
import torch.nn.functional as F

from pipeline.data.images.sklearn_digits import make_sklearn_digits
from pipeline.data.splits import label_budget
from pipeline.models.predict import inference_batch
from pipeline.models.small_cnn import small_cnn
from pipeline.objectives.cross_entropy import CrossEntropy
from pipeline.startup import keep_freed_memory
from pipeline.transfer.arms import init_model
from pipeline.transfer.fit import Member, fit_ensemble
from pipeline.transfer.freezing import freeze, keep_frozen_eval
from pipeline.transfer.prefix_cache import PrefixCache, prefix_activations
from pipeline.transfer.settings import FitSettings
from pipeline.transfer.widen import link, to_wide, widen
from stages._shell import quiet_libraries

REPEATS = 5  # interleaved; the best of each is reported


def interleaved(fns: dict, rounds: int = 25) -> dict:
    """Best time of each function over ``rounds`` round-robin calls: on a shared VM whose speed
    drifts, timing one variant after another measured the same pass at 2x apart."""
    for fn in fns.values():
        fn()
    times: dict = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: min(v) for k, v in times.items()}


def _wide(s: int) -> tuple[list, object]:
    """S freshly initialised 4-group CNNs and their wide network."""
    members = []
    for seed in range(s):
        torch.manual_seed(seed)
        # channels-last, as fit trains single networks and the wide network's activations are
        members.append(small_cnn(10).to(memory_format=torch.channels_last))
    wide = widen(members)
    link(wide)
    return members, wide


def vectorisation(s: int, compiled: bool = False) -> None:
    members, wide = _wide(s)
    base = copy.deepcopy(members[0]).to("meta")
    names = [n for n, _ in members[0].named_parameters()]
    buffers = {
        n: torch.stack([dict(m.named_buffers())[n] for m in members])
        for n, _ in members[0].named_buffers()
    }

    def stacked() -> dict:
        return {n: torch.stack([dict(m.named_parameters())[n] for m in members]) for n in names}

    def call(params, buffers, x):
        return torch.func.functional_call(base, (params, buffers), (x,))

    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, s, 1, 16, 16, generator=g)
    y = torch.randint(0, 10, (8, s), generator=g)
    xv = torch.randn(200, 1, 16, 16, generator=g)

    def step_one():
        F.cross_entropy(members[0](x[:, 0]), y[:, 0]).backward()

    def step_wide():
        logits = wide(to_wide(x)).view(8, s, 10)
        F.cross_entropy(logits.reshape(8 * s, 10), y.reshape(-1), reduction="sum").backward()

    def step_vmap():
        logits = torch.func.vmap(call, in_dims=(0, 0, 1))(stacked(), buffers, x)  # (S, 8, 10)
        F.cross_entropy(logits.reshape(8 * s, 10), y.T.reshape(-1), reduction="sum").backward()

    def step_loop():
        sum(F.cross_entropy(m(x[:, i]), y[:, i]) for i, m in enumerate(members)).backward()

    step = inference_batch(xv.device, s)  # the validation batches fit_ensemble uses

    @torch.no_grad()
    def val_one():
        one = inference_batch(xv.device)
        for i in range(0, len(xv), one):
            members[0](xv[i : i + one])

    @torch.no_grad()
    def val_one_batch():  # what fit did before inference_batch: the 200 images at once
        members[0](xv)

    @torch.no_grad()
    def val_wide():
        for i in range(0, len(xv), step):
            wide(to_wide(xv[i : i + step].unsqueeze(1).expand(-1, s, -1, -1, -1)))

    @torch.no_grad()
    def val_wide_before():  # batches of 512 // S member-images, as fit did before
        for i in range(0, len(xv), 512 // s):
            wide(to_wide(xv[i : i + 512 // s].unsqueeze(1).expand(-1, s, -1, -1, -1)))

    @torch.no_grad()
    def val_vmap():
        torch.func.vmap(call, in_dims=(0, 0, None))(stacked(), buffers, xv)

    @torch.no_grad()
    def val_loop():
        for m in members:
            m(xv)

    for m in (*members, wide, base):
        m.train()
    train = interleaved(
        {"one": step_one, "grouped": step_wide, "vmap": step_vmap, "loop": step_loop}
    )
    for m in (*members, wide, base):
        m.eval()
    val = interleaved(
        {
            "one": val_one,
            "one, 1 batch": val_one_batch,
            "grouped": val_wide,
            "grouped, before": val_wide_before,
            "vmap": val_vmap,
            "loop": val_loop,
        }
    )
    print(f"vectorising {s} members of the 4-group CNN (time / one model's; lower is better):")
    for name, times in (("training step, batch 8 each", train), ("validation, 200 images", val)):
        cells = "  ".join(f"{k} {t / times['one']:5.2f}x" for k, t in times.items() if k != "one")
        print(f"  {name:<30} one model {times['one'] * 1e3:6.2f} ms   {cells}")
    if compiled:
        compile_steps(members, wide, step_one, step_wide)


def compile_steps(members: list, wide: object, step_one, step_wide) -> None:
    """What ``torch.compile`` (TorchInductor's C++ kernels on CPU) would buy the training step:
    seconds to compile (the first forward and backward) and compiled / eager time per step, for
    one model and for the wide network. fit does not compile; this is the measurement behind
    that (README, "Benchmarks")."""
    for m in (*members, wide):
        m.train()
    modules = {"one": (members[0], step_one), "grouped": (wide, step_wide)}
    eager = {name: module.forward for name, (module, _) in modules.items()}
    fast, seconds = {}, {}
    for name, (module, step) in modules.items():
        fast[name] = module.forward = torch.compile(eager[name])
        t0 = time.perf_counter()
        step()
        seconds[name] = time.perf_counter() - t0

    def timed(name: str, forward) -> object:
        module, step = modules[name]

        def run() -> None:
            module.forward = forward
            step()

        return run

    times = interleaved(
        {(name, c): timed(name, (fast if c else eager)[name]) for name in modules for c in (0, 1)}
    )
    for name, (module, _) in modules.items():
        module.forward = eager[name]
    print("torch.compile of the training step (compiled / eager time; lower is better):")
    for name in modules:
        print(
            f"  {name:<8} compiling took {seconds[name]:5.1f} s, then "
            f"{times[name, 1] / times[name, 0]:4.2f}x eager's {times[name, 0] * 1e3:6.2f} ms a step"
        )


def paired_seeds(s: int) -> None:
    d = make_sklearn_digits(image_size=16, seed=0, test_fraction=0.4, val_per_class=20)
    tr, va = d.splits["train"], d.splits["val"]
    val = torch.from_numpy(va.x), torch.from_numpy(va.y)
    torch.manual_seed(123)
    source = small_cnn(10).state_dict()
    trainer = {"enable_progress_bar": False, "deterministic": True}

    def member(seed: int, k: int) -> Member:
        rows = label_budget(tr.y, 1, seed)
        settings = FitSettings(
            epochs=40,
            batch_size=8,
            head_lr=0.05,
            backbone_lr=0.01,
            weight_decay=5e-4,
            freeze_groups=k,
            seed=seed,
        )
        model = init_model(small_cnn, 10, seed=seed, source_state=source, init_groups=4)
        keys = {"target": ("src", seed), "val": ("src", "val")}
        data = torch.from_numpy(tr.x[rows]), torch.from_numpy(tr.y[rows])
        return Member(model, data, settings, cache_keys=keys)

    cache = PrefixCache()

    def run(k: int, n: int, vectorise: bool = True) -> float:
        members = [member(seed, k) for seed in range(n)]
        t0 = time.perf_counter()
        fit_ensemble(members, val, trainer_kwargs=trainer, cache=cache, vectorise=vectorise)
        return time.perf_counter() - t0

    print(f"{s} paired seeds of one arm vs one seed (1 label/class, batch 8, 40 epochs):")
    ones = {}
    for k in (0, 2, 4):
        run(k, 1)  # warm-up
        one, wide, loop = [], [], []
        for _ in range(REPEATS):
            one.append(run(k, 1))
            wide.append(run(k, s))
            loop.append(run(k, s, vectorise=False))
        o = ones[k] = min(one)
        print(
            f"  k={k}: one seed {o:5.2f} s   {s} seeds vectorised {min(wide):5.2f} s "
            f"({min(wide) / o:4.2f}x, goal <= 2x)   {s} seeds one after another in one loop "
            f"{min(loop) / o:4.2f}x"
        )
    for k in (0, 2):
        floor = validation_floor(s, val[0], epochs=40, k=k)
        print(
            f"  floor at k={k}: validating {s} members on {len(val[0])} images every epoch alone "
            f"takes {floor:5.2f} s over 40 epochs, {floor / ones[k]:4.2f}x the one-seed fit above"
        )
        steps = training_floor(s, val[0][:10], epochs=40, k=k)
        print(
            f"    with their training steps (10 images each, batch 8: forward, backward, SGD "
            f"step) {floor + steps:5.2f} s, {(floor + steps) / ones[k]:4.2f}x"
        )


def validation_floor(s: int, xv: torch.Tensor, epochs: int, k: int = 0) -> float:
    """Seconds of arithmetic no loop can skip: S members' validation passes (one wide network,
    the fit's inference batches) from the cached output of their ``k`` frozen groups, ``epochs``
    times."""
    members, wide = _wide(s)
    wide.eval()
    step = inference_batch(xv.device, s)
    xv = prefix_activations(members[0], xv, k)  # once: the members share the frozen groups
    x = xv.unsqueeze(1).expand(-1, s, *xv.shape[1:])

    @torch.inference_mode()
    def one_pass():
        for i in range(0, len(xv), step):
            wide(to_wide(x[i : i + step]), k)

    return interleaved({"pass": one_pass})["pass"] * epochs


def training_floor(s: int, x: torch.Tensor, epochs: int, k: int = 0, batch: int = 8) -> float:
    """Seconds of the other arithmetic no loop can skip: S members' training steps on their
    ``len(x)`` images (one wide network from the cached output of ``k`` frozen groups, the fit's
    batches, cross-entropy and SGD with momentum), ``epochs`` times. Without the fit's weight
    decay and its two learning-rate groups (about 5% of a step), so the floor is a little low."""
    members, wide = _wide(s)
    for m in members:
        freeze(m, k)
    wide.train()
    keep_frozen_eval(wide, k)
    # the wide network owns no parameters: it computes with the members'
    params = [p for m in members for p in m.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, nesterov=True, foreach=True)
    x = prefix_activations(members[0], x, k)
    xs = x.unsqueeze(1).expand(-1, s, *x.shape[1:]).contiguous()
    y = torch.arange(len(x)).remainder(10).unsqueeze(1).expand(-1, s).contiguous()

    def one_epoch():
        for i in range(0, len(x), batch):
            xb, yb = xs[i : i + batch], y[i : i + batch]
            opt.zero_grad(set_to_none=True)
            logits = wide(to_wide(xb), k).view(len(xb), s, 10)
            CrossEntropy.of_members(logits, yb).sum().backward()
            opt.step()

    return interleaved({"epoch": one_epoch})["epoch"] * epochs


def main(s: int = 10, compiled: bool = False) -> None:
    quiet_libraries()
    keep_freed_memory()  # what every stage and fit sets, so every pass here runs with it
    vectorisation(s, compiled)
    if not compiled:
        paired_seeds(s)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--compile"]
    main(int(args[0]) if args else 10, compiled="--compile" in sys.argv)
