"""Zero-cost proxies: score an architecture at initialisation, from one batch, without training.

Each proxy returns a float where higher means "predicted better". ``params`` reads the graph;
the others build the candidate's network with a seeded initialisation and look at one fixed
batch. They serve as cheap baselines beside the hypernetwork's scores and as alternative
scorers, chosen by name:

========= ==================================================================================
params    number of learnable parameters
synflow   synaptic flow (Tanaka et al., 2020) as a NAS proxy (Abdelfattah et al., 2021)
naswot    log-determinant of the activation-pattern kernel (Mellor et al., ICML 2021)
jacob_cov input-Jacobian correlation score (Mellor et al., 2020, first version of NASWOT)
snip      connection sensitivity (Lee et al., 2019)
grad_norm summed norms of the loss gradients (Abdelfattah et al., 2021)
========= ==================================================================================

Saliencies (synflow, snip, grad_norm) are summed over *connection weights*, the parameter
tensors of rank >= 2 (conv and linear kernels), as the papers prune connections; biases and
norm scales are left out. Every proxy but synflow uses the batch's own batch-norm statistics
(``batch_stats=True``), as a network does in training mode.

Degenerate networks: when nothing flows from the input to the output (an all-``none`` NB201
cell puts a ``zero`` node on every path), the network is a constant and cannot learn; every
proxy except ``params`` then scores it ``-inf`` without running it. A proxy whose arithmetic
gives NaN also scores ``-inf``. ``params`` always counts parameters.

Example:
    >>> import hypernas as hn
    >>> space = hn.load_space("mlp", input_shape=(8,))
    >>> cand = space.replay("depth=1,norm=none,l1_width=32,l1_act=relu")
    >>> x, y = torch.randn(16, 8), torch.arange(16) % 10
    >>> scores = score_all(["params", "naswot"], cand.graph, x, y)
    >>> scores["params"], scores["naswot"] > 0
    (618.0, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import networkx as nx
import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.dataset import DataError, Split
from ..errors import HypernasError
from ..graphs.graph import input_node, output_node
from ..graphs.network import Network, count_params

__all__ = ["UnknownScorerError", "list_proxies", "proxy_batch", "score_all", "score_proxy"]

# Elementwise nonlinearities whose input sign gives NASWOT's binary code ("which side of the
# kink"); for relu and relu6 that is exactly the unit's linear region.
ACTIVATIONS = ("relu", "relu6", "gelu", "silu", "hardswish", "tanh", "sigmoid")
JACOB_K = 1e-5  # jacob_cov's regulariser k (Mellor et al., 2020)

GraphProxy = Callable[[nx.DiGraph], float]
NetProxy = Callable[[Network, Tensor, Tensor], float]


class UnknownScorerError(HypernasError, ValueError):
    """A proxy name is not registered; the message lists the known names."""


# ----- the proxies: graph proxies read the graph; the others get a freshly initialised network
# ----- in eval mode and one batch

def params(graph: nx.DiGraph) -> float:
    """Number of learnable parameters (counted from the graph; nothing is built)."""
    return float(count_params(graph))


def synflow(net: Network, x: Tensor, y: Tensor) -> float:
    """``sum |theta * dR/dtheta|`` with ``R = sum(f_|theta|(1))``: the network linearised, with
    every weight replaced by its absolute value, run on one all-ones input, in float64 so products
    of many layers do not overflow. ``x`` gives only the input shape.

    Linearised: every activation passes its input through. A ReLU does so anyway on this
    all-positive signal; relu6, tanh or sigmoid would saturate and cut the flow to zero. Batch
    norms use their fresh running statistics (mean 0, var 1), so they are near-identities, as
    when the proxy removes them."""
    net = net.double()
    weights = {k: p.detach().abs().requires_grad_() for k, p in net.named_parameters()}
    ones = torch.ones(1, *x.shape[1:], dtype=torch.float64, device=x.device)  # (1, *input_shape)
    with _hooked(net, ACTIVATIONS, lambda module, args, out: args[0]):
        R = torch.func.functional_call(net, weights, (ones,)).sum()
    return _saliency(weights, R, lambda w, g: (w * g).abs().sum())


def snip(net: Network, x: Tensor, y: Tensor) -> float:
    """``sum |theta * dL/dtheta|``, ``L`` the cross-entropy of the batch."""
    weights = dict(net.named_parameters())
    loss = F.cross_entropy(net(x, batch_stats=True), y)
    return _saliency(weights, loss, lambda w, g: (w * g).abs().sum())


def grad_norm(net: Network, x: Tensor, y: Tensor) -> float:
    """``sum_l ||dL/dtheta_l||_2`` over weight tensors ``l``, ``L`` the batch's cross-entropy."""
    weights = dict(net.named_parameters())
    loss = F.cross_entropy(net(x, batch_stats=True), y)
    return _saliency(weights, loss, lambda w, g: g.norm())


def _saliency(weights: dict[str, Tensor], objective: Tensor,
              per_tensor: Callable[[Tensor, Tensor], Tensor]) -> float:
    """``sum_l per_tensor(theta_l, d objective / d theta_l)`` over connection weights."""
    kernels = [w for w in weights.values() if w.dim() >= 2]
    grads = torch.autograd.grad(objective, kernels, allow_unused=True)
    return float(sum(per_tensor(w.detach(), g).double()
                     for w, g in zip(kernels, grads) if g is not None))


@torch.no_grad()
def naswot(net: Network, x: Tensor, y: Tensor) -> float:
    """``log |det K|``, ``K = sum over activation layers of c c^T + (1 - c)(1 - c)^T`` with ``c``
    the batch's binary codes (input > 0) of that layer's units: ``K_ij`` counts the units on
    which examples ``i`` and ``j`` agree. A network without activations scores ``-inf``."""
    K = torch.zeros(len(x), len(x), dtype=torch.float64, device=x.device)  # (B, B)

    def add_codes(module: torch.nn.Module, args: tuple[Tensor, ...], out: Tensor) -> None:
        c = (args[0] > 0).flatten(1).double()  # (B, units)
        K.add_(c @ c.T + (1 - c) @ (1 - c).T)

    with _hooked(net, ACTIVATIONS, add_codes):
        net(x, batch_stats=True)
    return float(torch.linalg.slogdet(K).logabsdet)


def jacob_cov(net: Network, x: Tensor, y: Tensor) -> float:
    """``-sum_i [log(v_i + k) + 1 / (v_i + k)]`` over the eigenvalues ``v`` of the correlation
    matrix of the per-example input Jacobians ``d sum(f(x)) / d x_b``; higher when the examples'
    Jacobians are less correlated."""
    x = x.detach().requires_grad_()
    J = torch.autograd.grad(net(x, batch_stats=True).sum(), x)[0].flatten(1)  # (B, input size)
    v = torch.linalg.eigvalsh(torch.corrcoef(J.double()))  # (B,)
    return float(-(torch.log(v + JACOB_K) + 1 / (v + JACOB_K)).sum())


# ----- registry and scoring ----------------------------------------------------------------------

_GRAPH_PROXIES: dict[str, GraphProxy] = {"params": params}  # scored even for constant networks
_NET_PROXIES: dict[str, NetProxy] = {
    "synflow": synflow,
    "naswot": naswot,
    "jacob_cov": jacob_cov,
    "snip": snip,
    "grad_norm": grad_norm,
}


def list_proxies() -> list[str]:
    """Names of the registered proxies, in a fixed order."""
    return [*_GRAPH_PROXIES, *_NET_PROXIES]


def score_proxy(name: str, graph: nx.DiGraph, x: Tensor, y: Tensor, *, seed: int = 0) -> float:
    """Score the architecture ``graph`` with the proxy ``name``; higher is predicted better.

    The network is built after ``torch.manual_seed(seed)`` (on a forked RNG: the caller's random
    state is untouched) and run on ``x``'s device, so the score is a function of
    ``(name, graph, x, y, seed)``. A network whose output ignores its input scores ``-inf``
    (except on ``params``), and so does a NaN score.

    Args:
        name: one of :func:`list_proxies`.
        graph: a valid architecture graph.
        x: the batch, e.g. from :func:`proxy_batch`; at least 2 examples.
        y: its class labels.
        seed: seed of the network's initialisation.

    Shapes:
        x: (B, *graph.graph["input_shape"]) float32, y: (B,) int64

    Example:
        >>> import hypernas as hn
        >>> cand = hn.load_space("nb201", input_shape=(1, 8, 8), C=4, N=1).replay("000000")
        >>> score_proxy("synflow", cand.graph, torch.zeros(2, 1, 8, 8), torch.tensor([0, 1]))
        -inf
    """
    _check_name(name)
    _check_batch(graph, x, y)
    if name in _GRAPH_PROXIES:
        return _GRAPH_PROXIES[name](graph)
    if not output_depends_on_input(graph):
        return -math.inf
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = Network(graph).to(x.device).eval()
    with torch.enable_grad():
        score = _NET_PROXIES[name](net, x, y)
    return -math.inf if math.isnan(score) else score


def score_all(names: Iterable[str], graph: nx.DiGraph, x: Tensor, y: Tensor,
              seed: int = 0) -> dict[str, float]:
    """``{name: score_proxy(name, graph, x, y, seed=seed)}``; every name is checked first."""
    names = list(names)
    for name in names:
        _check_name(name)
    return {name: score_proxy(name, graph, x, y, seed=seed) for name in names}


def proxy_batch(split: Split, n: int = 64, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A fixed, seeded, class-balanced batch of ``n`` examples of ``split`` for the proxies.

    Shapes:
        returns x: (n, *input_shape), y: (n,)

    Example:
        >>> s = Split(torch.zeros(100, 3), torch.arange(100) % 10)
        >>> x, y = proxy_batch(s, n=20)
        >>> x.shape, y.bincount().tolist()
        (torch.Size([20, 3]), [2, 2, 2, 2, 2, 2, 2, 2, 2, 2])
    """
    batch = split.subset(n, seed=seed)
    return batch.x, batch.y


def output_depends_on_input(graph: nx.DiGraph) -> bool:
    """Whether some path leads from input to output without passing through a ``zero`` node
    (whose output ignores its input)."""
    live = nx.DiGraph(graph)
    live.remove_edges_from([e for n, op in graph.nodes(data="op") if op == "zero"
                            for e in graph.in_edges(n)])
    return nx.has_path(live, input_node(graph), output_node(graph))


@contextmanager
def _hooked(net: Network, ops: tuple[str, ...], hook: Callable) -> Iterator[None]:
    """``hook`` registered as a forward hook on every node of ``net`` whose op is in ``ops``."""
    handles = [net.nodes[str(n)].register_forward_hook(hook)
               for n, op in net.graph.nodes(data="op") if op in ops]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _check_name(name: str) -> None:
    if not isinstance(name, str) or name not in list_proxies():
        raise UnknownScorerError(f"unknown proxy {name!r}; known proxies: "
                                 f"{', '.join(list_proxies())}")


def _check_batch(graph: nx.DiGraph, x: Tensor, y: Tensor) -> None:
    shape = tuple(graph.graph["input_shape"])
    if x.dim() != len(shape) + 1 or tuple(x.shape[1:]) != shape or y.shape != (len(x),):
        raise DataError(f"proxies need x shaped (B, {', '.join(map(str, shape))}) and y shaped "
                        f"(B,), got x {tuple(x.shape)} and y {tuple(y.shape)}; resize the batch "
                        "to the graph's input_shape (hypernas.refine.train.resize_split)")
    if len(x) < 2:
        raise DataError(f"proxies need a batch of at least 2 examples, got {len(x)}; "
                        "use proxy_batch(split, n=64)")
