"""Several networks of one architecture run as one wide network (grouped convolutions).

An ensemble of S members becomes one network whose activations hold member i's channels in block
i (layout ``(N, S*C, ...)``): every convolution is one grouped convolution with S times the
groups, every BatchNorm normalises member i's channels over member i's batch only, and every
linear layer is one batched matrix product. This is how Packed-Ensembles pack members into one
network (Laurent et al., "Packed-Ensembles for Efficient Uncertainty Estimation", ICLR 2023);
here the members keep their own parameters (the wide layers concatenate them at every call, so
gradients, optimiser groups and learning rates stay per member) and their own BatchNorm
statistics (members' buffers become views into the wide buffers while linked).

Chosen over ``torch.func.vmap`` + ``functional_call`` on stacked parameters because it measured
faster on 2 CPU cores for our CNNs (``tests/benchmarks/bench_throughput.py`` prints both): vmap's
convolution rule also folds members into groups, but re-lays out the activations at every layer
and dispatches each op through the vmap interpreter, which on CPU cost more than it saved.

Only layers whose computation is per channel can be widened; anything else (LayerNorm, attention,
random layers such as active dropout, modules with their own parameters outside the supported
layers) raises :class:`WidenError`, and the caller runs the members one after another instead.
Custom ``forward`` code between layers (residual additions, pooling) works unchanged as long as it
keeps channels apart; :func:`check_wide` verifies the wide network against its members.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.grouped import GroupedNet

# Layers that act on every channel separately and own no parameters: they run unchanged on the
# wide layout.
PER_CHANNEL = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Identity,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)
_CONV = {nn.Conv1d: F.conv1d, nn.Conv2d: F.conv2d, nn.Conv3d: F.conv3d}


class WidenError(ValueError):
    """The members cannot run as one wide network; the message says which layer and why."""


def random_layers(model: nn.Module) -> list[str]:
    """Names of layers that draw random numbers in training (dropout, drop-path, ...).

    Members that share torch's global generator inside one ensemble would draw a different
    sequence than when trained one by one, so such models are never ensembled.
    """
    found = []
    for name, module in model.named_modules():
        if "Drop" not in type(module).__name__:
            continue
        rate = next(
            (getattr(module, a) for a in ("p", "drop_prob", "drop_rate") if hasattr(module, a)), 0
        )
        if isinstance(rate, int | float) and rate > 0:
            found.append(name or type(module).__name__)
    return found


class _Wide(nn.Module):
    """A wide layer computing the same layer of every member; holds the members' layers
    without registering them (the ensemble owns them)."""

    def __init__(self, layers: Sequence[nn.Module]) -> None:
        super().__init__()
        self.layers = tuple(layers)

    def _cat(self, name: str) -> torch.Tensor | None:
        tensors = [getattr(m, name) for m in self.layers]
        if tensors[0] is None:
            return None
        return tensors[0] if len(tensors) == 1 else torch.cat(tensors)

    def link(self) -> None:
        """Make the members' buffers views of this layer's wide buffers (none by default)."""

    def unlink(self) -> None:
        """Give the members' buffers their own memory again (none by default)."""


class WideConv(_Wide):
    """S convolutions as one grouped convolution."""

    def __init__(self, layers: Sequence[nn.Module]) -> None:
        super().__init__(layers)
        self.fn = _CONV[type(layers[0])]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.layers[0]
        padding = m.padding
        if m.padding_mode != "zeros":  # what nn.Conv*d does itself: pad, then convolve
            x = F.pad(x, m._reversed_padding_repeated_twice, mode=m.padding_mode)
            padding = 0
        groups = m.groups * len(self.layers)
        weight, bias = self._cat("weight"), self._cat("bias")
        return self.fn(x, weight, bias, m.stride, padding, m.dilation, groups)


class WideBatchNorm(_Wide):
    """S BatchNorm layers as one over S times the channels (per member statistics)."""

    _STATS = ("running_mean", "running_var", "num_batches_tracked")

    def __init__(self, layers: Sequence[nn.Module]) -> None:
        super().__init__(layers)
        self.wide: dict[str, torch.Tensor] = {}

    def link(self) -> None:
        m = self.layers[0]
        if not m.track_running_stats:
            return
        for name in self._STATS:
            parts = [getattr(layer, name) for layer in self.layers]
            wide = torch.cat([p.reshape(-1) for p in parts])
            self.wide[name] = wide
            size = parts[0].numel()
            for i, layer in enumerate(self.layers):
                layer._buffers[name] = wide[i * size : (i + 1) * size].view_as(parts[i])

    def unlink(self) -> None:
        if not self.wide:
            return
        for layer in self.layers:
            for name in self._STATS:
                layer._buffers[name] = layer._buffers[name].clone()
        self.wide = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # nn.modules.batchnorm._BatchNorm.forward, on the wide buffers
        m = self.layers[0]
        factor = 0.0 if m.momentum is None else m.momentum
        stats = self.wide
        if self.training and m.track_running_stats and stats:
            stats["num_batches_tracked"].add_(1)
            if m.momentum is None:
                factor = 1.0 / float(stats["num_batches_tracked"][0])
        use_batch = self.training or not stats
        track = not self.training or m.track_running_stats
        return F.batch_norm(
            x,
            stats.get("running_mean") if track else None,
            stats.get("running_var") if track else None,
            self._cat("weight"),
            self._cat("bias"),
            use_batch,
            factor,
            m.eps,
        )


class WideLinear(_Wide):
    """S linear layers as one batched matrix product on ``(N, S*in)`` inputs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = len(self.layers)
        if s == 1:
            m = self.layers[0]
            return F.linear(x, m.weight, m.bias)
        n = x.shape[0]
        xs = x.reshape(n, s, -1).transpose(0, 1)  # (S, N, in)
        weight = torch.stack([m.weight for m in self.layers]).transpose(1, 2)  # (S, in, out)
        if self.layers[0].bias is None:
            out = torch.bmm(xs, weight)
        else:
            bias = torch.stack([m.bias for m in self.layers]).unsqueeze(1)
            out = torch.baddbmm(bias, xs, weight)
        return out.transpose(0, 1).reshape(n, -1)


def _wide_layer(layers: Sequence[nn.Module], name: str) -> nn.Module:
    first = layers[0]
    kind = type(first)
    if kind in _CONV:
        return WideConv(layers)
    if isinstance(first, nn.modules.batchnorm._BatchNorm) and not isinstance(
        first, nn.SyncBatchNorm
    ):
        return WideBatchNorm(layers)
    if kind is nn.Linear:
        return WideLinear(layers)
    if isinstance(first, PER_CHANNEL):
        return first
    if isinstance(first, nn.Flatten) and first.start_dim == 1:
        return first
    raise WidenError(f"layer {name or '<root>'} ({kind.__name__}) is not supported")


def widen(members: Sequence[GroupedNet]) -> GroupedNet:
    """One network computing every member at once on the member-major wide layout.

    The result shares the members' parameters (it owns none) and, after :func:`link`, their
    BatchNorm statistics. Its ``training`` flags are its own: put it in train or eval mode (and
    keep frozen groups in eval mode) like the members.

    Raises:
        WidenError: A layer is not supported, a module owns parameters outside supported
            layers, a layer draws random numbers, or the members' architectures differ.
    """
    first = members[0]
    if drops := random_layers(first):
        raise WidenError(f"layer {drops[0]} draws random numbers in training")
    shapes = {k: v.shape for k, v in first.state_dict().items()}
    for other in members[1:]:
        if {k: v.shape for k, v in other.state_dict().items()} != shapes:
            raise WidenError("the members' architectures differ")
    wide = copy.deepcopy(first)
    by_name = [dict(m.named_modules()) for m in members]
    for name, module in list(wide.named_modules()):
        children = list(module.children())
        own = list(module.named_parameters(recurse=False))
        own += list(module.named_buffers(recurse=False))
        if children and own:
            raise WidenError(f"module {name or '<root>'} owns tensors besides its layers")
        if children:
            continue
        layer = _wide_layer([named[name] for named in by_name], name)
        if layer is not module:
            parent, _, leaf = name.rpartition(".")
            wide.get_submodule(parent).register_module(leaf, layer)
    return wide


def link(wide: nn.Module) -> None:
    """Make the members' BatchNorm statistics views into the wide network's buffers (call after
    the members reached their device and dtype)."""
    for module in wide.modules():
        if isinstance(module, _Wide):
            module.link()


def unlink(wide: nn.Module) -> None:
    """Give every member its own BatchNorm statistics again (after training)."""
    for module in wide.modules():
        if isinstance(module, _Wide):
            module.unlink()


def to_wide(x: torch.Tensor) -> torch.Tensor:
    """``(N, S, C, ...)`` per-member inputs as the wide layout ``(N, S*C, ...)``.

    Images come out channels-last: oneDNN's grouped convolutions (and the BatchNorm, ReLU and
    pooling between them) ran 1.5-2x faster on that layout than on the default one for our
    ensembles (measured with tests/benchmarks/bench_ensemble.py).
    """
    wide = x.reshape(x.shape[0], x.shape[1] * x.shape[2], *x.shape[3:])
    return wide.contiguous(memory_format=torch.channels_last) if wide.dim() == 4 else wide


@torch.no_grad()
def check_wide(wide: GroupedNet, members: Sequence[GroupedNet], x: torch.Tensor) -> None:
    """Raise :class:`WidenError` unless ``wide`` gives every member's logits on ``x``.

    Runs in eval mode (BatchNorm on running statistics, so nothing is updated); a forward that
    mixes channels (a concatenation or reshape over channels) shows up as a mismatch.
    """
    modes = [m.training for m in (wide, *members)]
    for m in (wide, *members):
        m.eval()
    s = len(members)
    try:
        got = wide(to_wide(x.unsqueeze(1).expand(-1, s, *x.shape[1:])))
        got = got.reshape(len(x), s, -1)
        for i, member in enumerate(members):
            want = member(x)
            if not torch.allclose(got[:, i].float(), want.float(), rtol=1e-3, atol=1e-4):
                raise WidenError("its forward mixes the members' channels")
    finally:
        for m, mode in zip((wide, *members), modes, strict=True):
            m.train(mode)
