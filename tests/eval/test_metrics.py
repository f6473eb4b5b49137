"""Distribution metrics against closed-form and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from avbridge.errors import AvbridgeError
from avbridge.eval import metrics as M


def _gaussian_samples(mu, cov, n, seed):
    """Samples whose empirical mean and covariance (ddof=1) equal mu and cov exactly."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, len(mu)))
    x -= x.mean(0)
    x = x @ np.linalg.inv(np.linalg.cholesky(np.atleast_2d(np.cov(x, rowvar=False)))).T  # whiten exactly
    return x @ np.linalg.cholesky(cov).T + mu


@pytest.mark.parametrize("method", ["eigh", "sqrtm"])
def test_frechet_1d_gaussians(method):
    a = _gaussian_samples(np.array([1.0]), np.array([[4.0]]), 50, 0)
    b = _gaussian_samples(np.array([-0.5]), np.array([[0.25]]), 60, 1)
    # (m1 - m2)^2 + (s1 - s2)^2
    assert M.frechet_distance(a, b, method) == pytest.approx(1.5**2 + (2 - 0.5) ** 2, rel=1e-9)


@pytest.mark.parametrize("method", ["eigh", "sqrtm"])
def test_frechet_diagonal_covariances(method):
    va, vb = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.01])
    ma, mb = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, -1.0])
    a = _gaussian_samples(ma, np.diag(va), 40, 2)
    b = _gaussian_samples(mb, np.diag(vb), 40, 3)
    expected = ((ma - mb) ** 2).sum() + ((np.sqrt(va) - np.sqrt(vb)) ** 2).sum()
    assert M.frechet_distance(a, b, method) == pytest.approx(expected, rel=1e-9)


def test_frechet_identical_sets_and_non_commuting_covariances():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((30, 8))
    assert abs(M.frechet_distance(x, x)) < 1e-9
    # rank-deficient covariance (N < D): eigh stays real and exact, sqrtm agrees
    y = rng.standard_normal((6, 16))
    assert abs(M.frechet_distance(y, y)) < 1e-8
    # non-commuting: S_a = I, so Tr sqrt(S_a S_b) = sum sqrt(eig(S_b))
    cb = np.array([[2.0, 0.8], [0.8, 1.0]])
    a = _gaussian_samples(np.zeros(2), np.eye(2), 20, 5)
    b = _gaussian_samples(np.zeros(2), cb, 20, 6)
    expected = 2 + np.trace(cb) - 2 * np.sqrt(np.linalg.eigvalsh(cb)).sum()
    assert M.frechet_distance(a, b, "eigh") == pytest.approx(expected, rel=1e-9)
    assert M.frechet_distance(a, b, "sqrtm") == pytest.approx(expected, rel=1e-7)
    # general case: both square-root methods agree
    p, q = rng.standard_normal((50, 5)), rng.standard_normal((40, 5)) * 2 + 1
    assert M.frechet_distance(p, q, "eigh") == pytest.approx(M.frechet_distance(p, q, "sqrtm"), rel=1e-7)


def test_frechet_bad_inputs():
    with pytest.raises(AvbridgeError, match="at least 2"):
        M.frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(AvbridgeError, match="dimensions"):
        M.frechet_distance(np.random.rand(4, 3), np.random.rand(4, 2))
    with pytest.raises(AvbridgeError, match="NaN"):
        M.frechet_distance(np.full((4, 3), np.nan), np.random.rand(4, 3))


def test_kid_against_hand_computation():
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    y = np.array([[2.0, 0.0], [0.0, 0.0], [1.0, -1.0]])
    d = 2

    def k(u, v):
        return (sum(ui * vi for ui, vi in zip(u, v, strict=True)) / d + 1) ** 3

    m = 3
    kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    expected = kxx + kyy - 2 * kxy
    assert M.mmd2_unbiased(x, y) == pytest.approx(expected, rel=1e-12)
    # full-size subsets are permutations of the sets: every subset gives the same value
    mean, std = M.kernel_distance(x, y, subset_size=10, n_subsets=5)
    assert mean == pytest.approx(expected, rel=1e-12) and std == pytest.approx(0, abs=1e-12)


def test_kid_subsets_deterministic_and_near_zero_for_same_distribution():
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((200, 4)), rng.standard_normal((200, 4))
    r1 = M.kernel_distance(a, b, subset_size=50, n_subsets=20, seed=3)
    assert r1 == M.kernel_distance(a, b, subset_size=50, n_subsets=20, seed=3)
    far = M.kernel_distance(a, b + 3, subset_size=50, n_subsets=20, seed=3)
    assert abs(r1[0]) < 0.1 < far[0]
    with pytest.raises(AvbridgeError, match="at least 2"):
        M.kernel_distance(a[:1], b)


def test_kl_paired_hand_values():
    gen = np.array([[0.5, 0.5], [0.9, 0.1]])
    ref = np.array([[1.0, 0.0], [0.5, 0.5]])
    eps = 1e-6
    # KL(ref || gen): row 0 = 1*log(1/(0.5+eps)); row 1 = 0.5 log(0.5/(0.9+eps)) + 0.5 log(0.5/(0.1+eps))
    r0 = math.log(1 / (0.5 + eps))
    r1 = 0.5 * math.log(0.5 / (0.9 + eps)) + 0.5 * math.log(0.5 / (0.1 + eps))
    # KL(gen || ref): row 0 = 0.5 log(0.5/(1+eps)) + 0.5 log(0.5/eps)
    g0 = 0.5 * math.log(0.5 / (1 + eps)) + 0.5 * math.log(0.5 / eps)
    g1 = 0.9 * math.log(0.9 / (0.5 + eps)) + 0.1 * math.log(0.1 / (0.5 + eps))
    out = M.kl_paired(gen, ref, eps=eps)
    assert out["kl_ref_gen"] == pytest.approx((r0 + r1) / 2, rel=1e-12)
    assert out["kl_gen_ref"] == pytest.approx((g0 + g1) / 2, rel=1e-12)
    assert M.kl_paired(ref, ref, eps=0.0)["kl_ref_gen"] == pytest.approx(0, abs=1e-12)
    with pytest.raises(AvbridgeError, match="matching shapes"):
        M.kl_paired(gen, ref[:1])
    with pytest.raises(AvbridgeError, match=r"\[0, 1\]"):
        M.kl_paired(gen * 3, ref)


def test_inception_score_hand_values():
    # confident and uniformly spread over C classes -> IS = C
    assert M.inception_score(np.eye(4))[0] == pytest.approx(4.0, rel=1e-9)
    # all predictions identical -> IS = 1
    assert M.inception_score(np.full((5, 3), 1 / 3))[0] == pytest.approx(1.0, rel=1e-9)
    p = np.array([[0.8, 0.2], [0.4, 0.6]])
    py = p.mean(0)
    kl = np.mean([(row * np.log(row / py)).sum() for row in p])
    assert M.inception_score(p, eps=0)[0] == pytest.approx(math.exp(kl), rel=1e-12)
    mean, std = M.inception_score(np.vstack([np.eye(2), np.full((2, 2), 0.5)]), splits=2)
    assert mean == pytest.approx(1.5) and std == pytest.approx(0.5)
    with pytest.raises(AvbridgeError, match="splits"):
        M.inception_score(np.eye(2), splits=3)
