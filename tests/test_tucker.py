import numpy as np
import pytest

from kcc import tucker

SHAPES = [(3, 3, 16, 32), (3, 3, 32, 16), (1, 1, 8, 24), (1, 1, 24, 8), (5, 3, 4, 6)]


def _random_kernel(shape, seed=0, decay=True):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=shape) * 0.1
    if decay:  # a peaked output-mode spectrum in a random basis, as trained kernels have
        q, _ = np.linalg.qr(rng.normal(size=(shape[3], shape[3])))
        w = np.einsum("hwco,op->hwcp", w, q @ np.diag(np.geomspace(1, 0.05, shape[3])) @ q.T)
    return w


@pytest.mark.parametrize("shape", SHAPES)
def test_tucker2_is_exact_at_full_rank(shape):
    w = _random_kernel(shape)
    d = tucker.tucker2(w)
    k1, k2, i, o = shape
    assert d.u1.shape == (o, min(o, i * k1 * k2)) and d.u2.shape == (i, min(i, o * k1 * k2))
    assert d.core.shape == (k1, k2, d.u2.shape[1], d.u1.shape[1])
    np.testing.assert_allclose(tucker.reconstruct(d.core, d.u1, d.u2), w, atol=1e-9)
    # Singular values agree with an SVD of the unfoldings.
    np.testing.assert_allclose(d.sigma1, np.linalg.svd(tucker.unfold(w, 1), compute_uv=False), rtol=1e-7)
    np.testing.assert_allclose(d.sigma2, np.linalg.svd(tucker.unfold(w, 2), compute_uv=False), rtol=1e-7)
    assert np.all(np.diff(d.sigma1) <= 0)


def test_unfold_matches_the_papers_matricization():
    w = np.arange(2 * 2 * 3 * 4, dtype=float).reshape(2, 2, 3, 4)  # (K, K, I, O)
    paper = np.transpose(w, (3, 2, 0, 1))  # O x I x K x K
    np.testing.assert_array_equal(tucker.unfold(w, 1), paper.reshape(4, -1))
    np.testing.assert_array_equal(tucker.unfold(w, 2), np.transpose(paper, (1, 0, 2, 3)).reshape(3, -1))


def _reference_scaling(core_keras, sigma1, sigma2, tau, reading):
    """Eq. 5-7 written the slow, literal way on the paper's layout G (r1, r2, K, K)."""
    g = np.transpose(core_keras, (3, 2, 0, 1)).copy()
    r1, r2, k1, k2 = g.shape
    sigma = np.concatenate([sigma1, sigma2])
    s = sigma.std()
    norm = (sigma - sigma.mean()) / s
    numerator = tau * s if reading == "literal" else tau
    g1 = g.reshape(r1, r2 * k1 * k2)  # G_(1)
    for i in range(r1):
        t = norm[i]
        if t > 0:
            g1[i] *= min(numerator / t, 1.0)
    g = g1.reshape(r1, r2, k1, k2)
    g2 = np.transpose(g, (1, 0, 2, 3)).reshape(r2, r1 * k1 * k2)  # G_(2)^temp
    for j in range(r2):
        t = norm[r1 + j]
        if t > 0:
            g2[j] *= min(numerator / t, 1.0)
    g = np.transpose(g2.reshape(r2, r1, k1, k2), (1, 0, 2, 3))
    return np.transpose(g, (2, 3, 1, 0))


@pytest.mark.parametrize("reading", tucker.READINGS)
@pytest.mark.parametrize("tau", [0.5, 1.0, 2.0, 4.0])
@pytest.mark.parametrize("shape", SHAPES[:3])
def test_scaling_matches_a_straightforward_eq5_to_7(reading, tau, shape):
    d = tucker.tucker2(_random_kernel(shape, seed=3))
    scaled, n1, n2 = tucker.scale_core(d.core, d.sigma1, d.sigma2, tau, reading)
    np.testing.assert_allclose(scaled, _reference_scaling(d.core, d.sigma1, d.sigma2, tau, reading),
                               atol=1e-12)
    assert (n1 + n2 > 0) == (not np.allclose(scaled, d.core))


@pytest.mark.parametrize("reading", tucker.READINGS)
def test_lower_tau_scales_at_least_as_many_components(reading):
    d = tucker.tucker2(_random_kernel((3, 3, 32, 32), seed=5))
    counts = [sum(tucker.scale_core(d.core, d.sigma1, d.sigma2, tau, reading)[1:])
              for tau in (8, 4, 2, 1, 0.5, 0.1, 0.01)]
    assert counts == sorted(counts) and counts[-1] > counts[0]


def test_the_two_readings_differ_by_s_sigma():
    norm = np.array([-1.0, 0.0, 0.5, 2.0, 5.0])
    text = tucker.scale_factors(norm, 0.5, 1.0, "text")
    literal = tucker.scale_factors(norm, 0.5, 1.0, "literal")
    np.testing.assert_allclose(text, [1, 1, 1, 0.5, 0.2])  # sign guard keeps <= 0 at 1
    np.testing.assert_allclose(literal, [1, 1, 1, 0.25, 0.1])


def test_scaling_rejects_bad_arguments():
    with pytest.raises(ValueError, match="tau_scale must be strictly positive"):
        tucker.scale_factors(np.ones(3), 1.0, 0.0)
    with pytest.raises(ValueError, match="reading must be one of"):
        tucker.scale_factors(np.ones(3), 1.0, 1.0, "paper")


def _layers(seed=0):
    shapes = [(3, 3, 16, 16), (3, 3, 16, 32), (1, 1, 16, 32), (3, 3, 32, 32)]
    out = []
    for k, shape in enumerate(shapes):
        d = tucker.tucker2(_random_kernel(shape, seed + k))
        out.append({"sigma1": d.sigma1, "sigma2": d.sigma2, "kernel_shape": shape, "use_bias": False})
    return out


@pytest.mark.parametrize("cr", [1.5, 2, 3, 4])
def test_select_ranks_meets_the_budget_closely(cr):
    layers = _layers()
    other = 1000
    original = other + sum(tucker.conv_params(l["kernel_shape"], False) for l in layers)
    ranks, tau_trunc, total = tucker.select_ranks(layers, other, cr)
    assert total <= original / cr
    assert total >= 0.9 * original / cr
    for l, (r1, r2) in zip(layers, ranks):
        assert r1 == max(1, np.sum(l["sigma1"] >= tau_trunc))
        assert r2 == max(1, np.sum(l["sigma2"] >= tau_trunc))


@pytest.mark.parametrize("cr", [1.5, 2, 3])
def test_select_ranks_rank_multiple(cr):
    layers = _layers()
    other = 1000
    original = other + sum(tucker.conv_params(l["kernel_shape"], False) for l in layers)
    plain, _, _ = tucker.select_ranks(layers, other, cr)
    assert tucker.select_ranks(layers, other, cr, rank_multiple=1)[0] == plain
    assert any(r % 8 for r1r2 in plain for r in r1r2)  # else rounding would change nothing
    ranks, tau_trunc, total = tucker.select_ranks(layers, other, cr, rank_multiple=8)
    assert total <= original / cr

    def rounded(sigma, threshold):
        r = max(1, int(np.sum(sigma >= threshold)))
        return min(len(sigma), -(-r // 8) * 8)

    for l, (r1, r2) in zip(layers, ranks):
        assert r1 % 8 == 0 or r1 == len(l["sigma1"])
        assert r2 % 8 == 0 or r2 == len(l["sigma2"])
        assert (r1, r2) == (rounded(l["sigma1"], tau_trunc), rounded(l["sigma2"], tau_trunc))
    # tau_trunc is the lowest threshold within budget: the next singular value below it is not.
    below = max(s for l in layers for s in np.concatenate([l["sigma1"], l["sigma2"]])
                if s < tau_trunc)
    over = other + sum(
        tucker.layer_params(l["kernel_shape"], rounded(l["sigma1"], below),
                            rounded(l["sigma2"], below), False) for l in layers)
    assert over > original / cr


@pytest.mark.parametrize("cr", [1.5, 2, 3, 4])
def test_select_ranks_relative_ignores_each_layers_scale(cr):
    layers = _layers()
    other = 1000
    original = other + sum(tucker.conv_params(l["kernel_shape"], False) for l in layers)
    ranks, tau_trunc, total = tucker.select_ranks(layers, other, cr, relative=True)
    assert total <= original / cr
    for l, (r1, r2) in zip(layers, ranks):
        norm = np.sqrt(np.sum(np.square(l["sigma1"])))
        assert r1 == max(1, np.sum(l["sigma1"] / norm >= tau_trunc))
        assert r2 == max(1, np.sum(l["sigma2"] / norm >= tau_trunc))
    # A kernel 100 times smaller (a BatchNorm after it would undo that) keeps its ranks when
    # they are relative; with raw values (Eq. 8) it falls to rank 1.
    shrunk = [dict(l, sigma1=l["sigma1"] / 100, sigma2=l["sigma2"] / 100) if k == 1 else l
              for k, l in enumerate(layers)]
    assert tucker.select_ranks(shrunk, other, cr, relative=True)[0] == ranks
    assert tucker.select_ranks(shrunk, other, cr)[0][1] == (1, 1)
    assert tucker.select_ranks(layers, other, cr)[0][1] != (1, 1)


def test_select_ranks_rank_multiple_errors():
    for bad in [0, -8, 2.5, "8", True, None]:
        with pytest.raises(ValueError, match=r"rank_multiple must be an integer >= 1.*Received "
                                             rf"rank_multiple={bad!r}\."):
            tucker.select_ranks(_layers(), 1000, 2, rank_multiple=bad)
    assert tucker.select_ranks(_layers(), 1000, 2, rank_multiple=np.int64(8))[0] == \
        tucker.select_ranks(_layers(), 1000, 2, rank_multiple=8)[0]
    # Rank 1 rounds up to 16 or 32 (full rank): no factored form is smaller than its conv.
    with pytest.raises(ValueError, match=r"even at rank min\(64, full rank\).*largest reachable "
                                         r"ratio is 1\.000"):
        tucker.select_ranks(_layers(), 1000, 1.5, rank_multiple=64)


def test_select_ranks_errors():
    with pytest.raises(ValueError, match="cr must be greater than 1"):
        tucker.select_ranks(_layers(), 0, 1.0)
    with pytest.raises(ValueError, match=r"cannot be reached.*largest reachable ratio is \d"):
        tucker.select_ranks(_layers(), 10**6, 2)
