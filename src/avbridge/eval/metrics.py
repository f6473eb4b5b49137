"""Distribution metrics from features or classifier probabilities.

- Frechet distance (FD / FAD / FVD: the same formula on different features)
- KID / KVD: unbiased MMD^2 with the cubic polynomial kernel, over random subsets
- KL (paired, per condition) and Inception Score from any classifier's probabilities

All functions take numpy arrays (N, D) and return plain floats, so they work with
any extractor; which features were used is the caller's label (FAD = audio
features, FVD = video features, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.linalg
import scipy.special

from avbridge.errors import AvbridgeError


def _as_2d(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise AvbridgeError(f"{what}: expected features of shape (N, D), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise AvbridgeError(f"{what}: features contain NaN or infinity")
    return x


@dataclass
class GaussianStats:
    """Mean (D,) and covariance (D, D) of a feature set (covariance with ddof=1)."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int

    @classmethod
    def from_features(cls, feats: np.ndarray, what: str = "features") -> GaussianStats:
        feats = _as_2d(feats, what)
        if len(feats) < 2:
            raise AvbridgeError(f"{what}: need at least 2 samples for a covariance, got {len(feats)}")
        return cls(feats.mean(axis=0), np.atleast_2d(np.cov(feats, rowvar=False)), len(feats))


def _clip_eigenvalues(w: np.ndarray) -> np.ndarray:
    """Eigenvalues of a PSD matrix with round-off (negative or below D * eps * max) set to 0.

    Without this, a rank-deficient covariance (fewer samples than dimensions) leaves
    ~1e-16 eigenvalues whose square roots (~1e-8 each) add up to a visible bias.
    """
    tol = len(w) * np.finfo(np.float64).eps * max(float(np.abs(w).max(initial=0.0)), 1e-300)
    return np.where(w > tol, w, 0.0)


def _psd_sqrt(a: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix via eigh."""
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(_clip_eigenvalues(w))) @ v.T


def trace_sqrt_product(s1: np.ndarray, s2: np.ndarray, method: Literal["eigh", "sqrtm"] = "eigh") -> float:
    """``Tr(sqrt(s1 @ s2))`` for covariance matrices s1, s2.

    ``eigh``: uses ``Tr sqrt(s1 s2) = Tr sqrt(A s2 A)`` with ``A = sqrt(s1)``; the inner
    matrix is symmetric PSD, so its eigenvalues are real and clipping tiny negative
    round-off to 0 is exact in spirit. ``sqrtm``: scipy's general square root of the
    product, with a diagonal offset if it is singular and the imaginary part dropped
    only when it is numerical noise (otherwise an error).
    """
    s1 = np.atleast_2d(s1)
    s2 = np.atleast_2d(s2)
    if method == "eigh":
        a = _psd_sqrt(s1)
        inner = a @ s2 @ a
        w = np.linalg.eigvalsh((inner + inner.T) / 2)
        return float(np.sqrt(_clip_eigenvalues(w)).sum())
    if method == "sqrtm":
        covmean = scipy.linalg.sqrtm(s1 @ s2)
        if not np.all(np.isfinite(covmean)):
            offset = np.eye(len(s1)) * 1e-6
            covmean = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
        if np.iscomplexobj(covmean):
            imag = np.abs(np.diagonal(covmean).imag).max()
            if imag > 1e-3 * max(1.0, np.abs(covmean).max()):
                raise AvbridgeError(f"matrix square root has a large imaginary component ({imag:.3g})")
            covmean = covmean.real
        return float(np.trace(covmean))
    raise ValueError(f"method must be 'eigh' or 'sqrtm', got {method!r}")


def frechet_distance_from_stats(
    a: GaussianStats, b: GaussianStats, method: Literal["eigh", "sqrtm"] = "eigh"
) -> float:
    """``|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 sqrt(S_a S_b))`` (squared 2-Wasserstein of Gaussians)."""
    if a.mu.shape != b.mu.shape:
        raise AvbridgeError(f"feature dimensions differ: {a.mu.shape[0]} vs {b.mu.shape[0]}")
    diff = a.mu - b.mu
    tr = np.trace(a.sigma) + np.trace(b.sigma) - 2 * trace_sqrt_product(a.sigma, b.sigma, method)
    return float(diff @ diff + tr)


def frechet_distance(
    feats_a: np.ndarray, feats_b: np.ndarray, method: Literal["eigh", "sqrtm"] = "eigh"
) -> float:
    """Frechet distance between two feature sets (N, D) and (M, D): FD / FAD / FVD."""
    return frechet_distance_from_stats(
        GaussianStats.from_features(feats_a, "generated"),
        GaussianStats.from_features(feats_b, "reference"),
        method,
    )


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, coef0: float = 1.0) -> np.ndarray:
    """``(x . y / d + coef0) ** degree``, the KID kernel (d = feature dimension)."""
    return (x @ y.T / x.shape[1] + coef0) ** degree


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, degree: int = 3, coef0: float = 1.0) -> float:
    """Unbiased MMD^2 of two samples with the polynomial kernel (diagonal terms excluded)."""
    m, n = len(x), len(y)
    kxx = polynomial_kernel(x, x, degree, coef0)
    kyy = polynomial_kernel(y, y, degree, coef0)
    kxy = polynomial_kernel(x, y, degree, coef0)
    return float(
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
        - 2 * kxy.mean()
    )


def kernel_distance(
    feats_a: np.ndarray,
    feats_b: np.ndarray,
    subset_size: int = 1000,
    n_subsets: int = 100,
    seed: int = 0,
    degree: int = 3,
    coef0: float = 1.0,
) -> tuple[float, float]:
    """KID / KVD: mean and std of unbiased MMD^2 over random subsets (without replacement).

    The subset size is capped at the smaller set's size; it must be at least 2.
    Deterministic for a given ``seed``.
    """
    a = _as_2d(feats_a, "generated")
    b = _as_2d(feats_b, "reference")
    if a.shape[1] != b.shape[1]:
        raise AvbridgeError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise AvbridgeError(f"KID needs at least 2 samples per set, got {len(a)} and {len(b)}")
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n_subsets):
        sa = a[rng.choice(len(a), m, replace=False)]
        sb = b[rng.choice(len(b), m, replace=False)]
        vals.append(mmd2_unbiased(sa, sb, degree, coef0))
    return float(np.mean(vals)), float(np.std(vals))


def _probs(p: np.ndarray, what: str) -> np.ndarray:
    p = _as_2d(p, what)
    if (p < 0).any() or (p > 1).any():
        raise AvbridgeError(f"{what}: probabilities must lie in [0, 1]")
    return p


def kl_paired(p_gen: np.ndarray, p_ref: np.ndarray, eps: float = 1e-6) -> dict[str, float]:
    """Mean paired KL between classifier probabilities of each generated sample and its reference.

    Returns ``{"kl_ref_gen": mean_i KL(ref_i || gen_i), "kl_gen_ref": mean_i KL(gen_i || ref_i)}``.
    ``kl_ref_gen`` is the field's convention (AudioGen / AudioLDM eval: torch
    ``kl_div(log(gen + eps), ref)`` summed over classes and averaged over pairs); the
    other direction is given too because papers are not consistent. ``eps`` is added
    inside the log of the second argument only, as in those tools; ``0 log 0 = 0``.
    With sigmoid (multi-label) probabilities this is the field's "KL_sigmoid", a
    per-class pointwise sum rather than a Bernoulli KL.
    """
    g = _probs(p_gen, "generated probabilities")
    r = _probs(p_ref, "reference probabilities")
    if g.shape != r.shape:
        raise AvbridgeError(f"paired KL needs matching shapes, got {g.shape} and {r.shape}")

    def kl(p: np.ndarray, q: np.ndarray) -> float:
        return float((scipy.special.xlogy(p, p) - scipy.special.xlogy(p, q + eps)).sum(axis=1).mean())

    return {"kl_ref_gen": kl(r, g), "kl_gen_ref": kl(g, r)}


def inception_score(probs: np.ndarray, splits: int = 1, eps: float = 1e-16) -> tuple[float, float]:
    """Inception Score ``exp(E_x KL(p(y|x) || p(y)))``: mean and std over ``splits`` consecutive splits.

    ``p(y)`` is the marginal within each split. Rows should sum to 1 (softmax outputs).
    """
    p = _probs(probs, "probabilities")
    if splits < 1 or len(p) < splits:
        raise AvbridgeError(f"Inception Score: {len(p)} samples cannot make {splits} splits")
    scores = []
    for part in np.array_split(p, splits):
        py = part.mean(axis=0, keepdims=True)
        kl = (scipy.special.xlogy(part, part) - scipy.special.xlogy(part, py + eps)).sum(axis=1).mean()
        scores.append(float(np.exp(kl)))
    return float(np.mean(scores)), float(np.std(scores))
