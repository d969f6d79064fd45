"""Zero-cost proxies: every proxy on every shipped space, determinism, the documented degenerate
values, and agreement with hand computations of the papers' formulas."""

from __future__ import annotations

import math

import pytest
import torch

import hypernas as hn
from hypernas.ranking import proxies
from hypernas.data import DataError, Split
from hypernas.graphs import GraphBuilder
from hypernas.ranking.proxies import (
    UnknownScorerError,
    list_proxies,
    proxy_batch,
    score_all,
    score_proxy,
)

B = 16  # batch size
IMAGES = (1, 16, 16)


@pytest.fixture(autouse=True)
def one_thread():
    """Small nets run faster, and alike from run to run, on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def nb201(code: str = "331003") -> hn.Candidate:
    return hn.load_space("nb201", input_shape=IMAGES, N=1, C=8).replay(code)


def mlp(encoding: str, input_size: int = 12) -> hn.Candidate:
    space = hn.load_space("mlp", input_shape=(input_size,), activations=("relu", "relu6", "tanh"))
    return space.replay(encoding)


CANDIDATES = {
    "nb201": nb201,
    "macro": lambda: hn.load_space("macro", input_shape=IMAGES).replay(
        "k3e1w8|k5e3w16,k3e3w16+|k3e6w32"),
    "mlp": lambda: mlp("depth=2,norm=batch_norm,l1_width=32,l1_act=relu,l2_width=64,l2_act=tanh"),
}


def batch(graph, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, *graph.graph["input_shape"], generator=g)
    return x, torch.arange(B) % 10


# ----- every proxy on every space -------------------------------------------------------------

@pytest.mark.parametrize("space", CANDIDATES)
@pytest.mark.parametrize("name", list_proxies())
def test_finite_and_deterministic(space: str, name: str) -> None:
    graph = CANDIDATES[space]().graph
    x, y = batch(graph)
    score = score_proxy(name, graph, x, y, seed=3)
    assert isinstance(score, float) and math.isfinite(score)
    assert score_proxy(name, graph, x, y, seed=3) == score


def test_list_proxies() -> None:
    assert list_proxies() == ["params", "synflow", "naswot", "jacob_cov", "snip", "grad_norm"]


@pytest.mark.parametrize("space", CANDIDATES)
def test_params_counts_parameters(space: str) -> None:
    graph = CANDIDATES[space]().graph
    assert score_proxy("params", graph, *batch(graph)) == float(hn.count_params(graph))


def test_seed_changes_the_initialisation_not_the_caller_rng() -> None:
    graph = nb201().graph
    x, y = batch(graph)
    state = torch.get_rng_state()
    assert score_proxy("snip", graph, x, y, seed=0) != score_proxy("snip", graph, x, y, seed=1)
    assert torch.equal(torch.get_rng_state(), state)


def test_bigger_cell_scores_higher_on_params_and_synflow() -> None:
    big, small = nb201("333333").graph, nb201("111111").graph
    x, y = batch(big)
    for name in ("params", "synflow"):
        assert score_proxy(name, big, x, y) > score_proxy(name, small, x, y)


def test_score_all_matches_score_proxy_and_runs_under_no_grad() -> None:
    graph = nb201().graph
    x, y = batch(graph)
    with torch.no_grad():
        scores = score_all(list_proxies(), graph, x, y, seed=2)
    assert scores == {n: score_proxy(n, graph, x, y, seed=2) for n in list_proxies()}


# ----- degenerate networks and errors ---------------------------------------------------------

@pytest.mark.parametrize("code", ["000000", "100000"])  # the cell output is zero in both
def test_constant_network_scores_minus_inf_except_params(code: str) -> None:
    graph = nb201(code).graph
    assert not proxies.output_depends_on_input(graph)
    scores = score_all(list_proxies(), graph, *batch(graph))
    assert scores.pop("params") == float(hn.count_params(graph))
    assert scores == {n: -math.inf for n in scores}


def test_nan_scores_minus_inf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(proxies._NET_PROXIES, "naswot", lambda net, x, y: math.nan)
    graph = nb201().graph
    assert score_proxy("naswot", graph, *batch(graph)) == -math.inf


def test_unknown_name_lists_the_known_ones() -> None:
    graph = nb201().graph
    with pytest.raises(UnknownScorerError, match="known proxies: params, synflow") as err:
        score_all(["params", "zen"], graph, *batch(graph))
    assert isinstance(err.value, hn.HypernasError) and isinstance(err.value, ValueError)


def test_batch_must_fit_the_graph() -> None:
    graph = nb201().graph
    x, y = batch(graph)
    with pytest.raises(DataError, match="input_shape"):
        score_proxy("naswot", graph, x[:, :, :8], y)
    with pytest.raises(DataError, match="at least 2"):
        score_proxy("naswot", graph, x[:1], y[:1])


def test_proxy_batch_is_fixed_and_class_balanced() -> None:
    split = Split(torch.randn(500, 3), torch.arange(500) % 10)
    x, y = proxy_batch(split, n=40, seed=1)
    assert x.shape == (40, 3) and y.bincount().tolist() == [4] * 10
    again, _ = proxy_batch(split, n=40, seed=1)
    assert torch.equal(x, again)
    assert not torch.equal(x, proxy_batch(split, n=40, seed=2)[0])


# ----- agreement with the formulas ------------------------------------------------------------

def test_naswot_is_the_logdet_of_the_relu_code_kernel() -> None:
    graph = mlp("depth=1,norm=none,l1_width=32,l1_act=relu").graph
    x, y = batch(graph)
    torch.manual_seed(5)
    net = hn.Network(graph)
    c = (net.nodes["l1_linear"](x) > 0).double()  # (B, 32): which units are on
    K = c @ c.T + (1 - c) @ (1 - c).T
    expected = torch.linalg.slogdet(K).logabsdet.item()
    assert score_proxy("naswot", graph, x, y, seed=5) == pytest.approx(expected)


def test_naswot_codes_any_activation_and_is_minus_inf_without_one() -> None:
    tanh = mlp("depth=1,norm=none,l1_width=32,l1_act=tanh").graph
    relu = mlp("depth=1,norm=none,l1_width=32,l1_act=relu").graph
    x, y = batch(tanh)
    assert score_proxy("naswot", tanh, x, y) == score_proxy("naswot", relu, x, y)  # same codes
    b = GraphBuilder(input_shape=(12,), num_outputs=10)
    b.output(b.add("linear", b.add("linear", b.input, out_features=32), out_features=10))
    assert score_proxy("naswot", b.build(), x, y) == -math.inf  # one linear region: K singular


def test_synflow_linearises_saturating_activations() -> None:
    x, y = batch(mlp("depth=1,norm=none,l1_width=32,l1_act=relu").graph)
    by_act = {a: score_proxy("synflow", mlp(f"depth=2,norm=none,l1_width=32,l1_act={a},"
                                            f"l2_width=64,l2_act={a}").graph, x, y)
              for a in ("relu", "relu6", "tanh")}
    assert by_act["relu6"] == by_act["tanh"] == by_act["relu"] > 0


def test_synflow_is_the_path_norm_of_a_linear_net() -> None:
    b = GraphBuilder(input_shape=(12,), num_outputs=10)
    b.output(b.add("linear", b.add("linear", b.input, out_features=32, bias=False, name="l1"),
                   out_features=10, bias=False, name="l2"))
    graph = b.build()
    torch.manual_seed(0)
    net = hn.Network(graph)
    W1, W2 = net.nodes["l1"].weight.abs().double(), net.nodes["l2"].weight.abs().double()
    # R = 1^T W2 W1 1; each weight's |theta dR/dtheta| is the flow through it, summed per layer.
    path = (W2.sum(0) * W1.sum(1)).sum()  # = R
    assert score_proxy("synflow", graph, *batch(graph)) == pytest.approx(2 * path.item())


def test_jacob_cov_of_identical_jacobians() -> None:
    # A linear net's input Jacobian is the same for every example: correlation 1 everywhere,
    # the worst case.
    b = GraphBuilder(input_shape=(12,), num_outputs=10)
    b.output(b.add("linear", b.input, out_features=10))
    graph = b.build()
    x, y = batch(graph)
    k = proxies.JACOB_K
    v = torch.tensor([B] + [0.0] * (B - 1), dtype=torch.float64)  # eigenvalues of ones((B, B))
    expected = -(torch.log(v + k) + 1 / (v + k)).sum().item()
    assert score_proxy("jacob_cov", graph, x, y) == pytest.approx(expected, rel=1e-6)
