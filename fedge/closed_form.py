"""A linear head fitted exactly from summed embedding statistics (Flower-free).

Every client sends, for its embeddings ``X`` (n x d) and labels ``y``, the
per-class counts ``c`` (K), per-class sums ``S`` (K x d) and the Gram matrix
``G = X^T X`` (d x d). These add up across clients, so the server's totals are
exactly what one machine holding all the samples would compute, whatever the
label skew; sums are what secure aggregation and DP noise on statistics work
with. From the totals the server solves a linear head in closed form:

- ``lda``: shared-covariance linear discriminant analysis. Class means
  ``mu_k = S_k / c_k``, within-class covariance ``(G - sum_k S_k S_k^T / c_k) /
  (n - K)``, shrunk toward a multiple of the identity; logits
  ``x^T Sigma^-1 mu_k - mu_k^T Sigma^-1 mu_k / 2 + log pi_k``.
- ``ridge``: least squares on one-hot labels with the same shrunk (total)
  covariance: ``W = Sigma^-1 Cov(x, onehot)``, ``b = pi - W^T mean``.

On the wire the Gram matrix is its upper triangle (d(d+1)/2 floats, summable),
or an exact factor ``F`` with ``F F^T = G`` (d x rank floats; smaller when a
client holds fewer than about d/2 samples, but not summable).

Statistics are taken about an ``origin`` every client shares (the server
sends it): ``sum (x - o)`` and ``sum (x - o)(x - o)^T``. Any origin gives the
same head; one near the data's mean keeps the float32 messages precise, since
embeddings (post-ReLU, pooled) sit far from zero and the covariance would
otherwise be a small difference of large float32 numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COUNTS = "counts"
SUMS = "sums"
GRAM_TRIANGLE = "gram-triangle"
GRAM_FACTOR = "gram-factor"


@dataclass
class ClassStatistics:
    """Sufficient statistics of labelled embeddings for a linear head, about
    ``origin``: per-class counts, per-class sums of ``x - origin`` and the Gram
    matrix of ``x - origin``."""

    counts: np.ndarray  # (K,) float64
    sums: np.ndarray  # (K, d) float64
    gram: np.ndarray  # (d, d) float64
    origin: np.ndarray  # (d,) float64

    @classmethod
    def zeros(cls, num_classes: int, dim: int, origin: np.ndarray | None = None) -> ClassStatistics:
        o = np.zeros(dim) if origin is None else np.asarray(origin, dtype=np.float64)
        return cls(np.zeros(num_classes), np.zeros((num_classes, dim)), np.zeros((dim, dim)), o)

    @classmethod
    def of(
        cls, x: np.ndarray, y: np.ndarray, num_classes: int, origin: np.ndarray | None = None
    ) -> ClassStatistics:
        """Statistics of embeddings ``x`` (n, d) with labels ``y`` in [0, K)."""
        dim = np.shape(x)[1]
        o = np.zeros(dim) if origin is None else np.asarray(origin, dtype=np.float64)
        x64 = np.asarray(x, dtype=np.float64) - o
        onehot = np.zeros((len(y), num_classes))
        onehot[np.arange(len(y)), y] = 1.0
        return cls(onehot.sum(0), onehot.T @ x64, x64.T @ x64, o)

    @property
    def num_samples(self) -> int:
        return int(round(self.counts.sum()))

    def __add__(self, other: ClassStatistics) -> ClassStatistics:
        if not np.array_equal(self.origin, other.origin):
            raise ValueError("statistics about different origins cannot be added.")
        return ClassStatistics(
            self.counts + other.counts,
            self.sums + other.sums,
            self.gram + other.gram,
            self.origin,
        )


def triangle_size(dim: int) -> int:
    return dim * (dim + 1) // 2


def pack(stats: ClassStatistics, gram: str = "triangle") -> dict[str, np.ndarray]:
    """Arrays to send: counts, sums and the Gram matrix as ``gram`` says.

    ``factor`` falls back to the triangle when the factor would be larger.
    """
    dim = stats.gram.shape[0]
    out = {COUNTS: stats.counts.astype(np.float32), SUMS: stats.sums.astype(np.float32)}
    if gram == "factor":
        factor = gram_factor(stats.gram)
        if factor.size < triangle_size(dim):
            out[GRAM_FACTOR] = factor.astype(np.float32)
            return out
    elif gram != "triangle":
        raise ValueError(f"unknown Gram form '{gram}'; allowed: triangle, factor.")
    out[GRAM_TRIANGLE] = stats.gram[np.triu_indices(dim)].astype(np.float32)
    return out


def unpack(arrays: dict[str, np.ndarray], origin: np.ndarray | None = None) -> ClassStatistics:
    """The statistics that :func:`pack` sent, taken about ``origin``."""
    sums = np.asarray(arrays[SUMS], dtype=np.float64)
    dim = sums.shape[1]
    if GRAM_TRIANGLE in arrays:
        tri = np.asarray(arrays[GRAM_TRIANGLE], dtype=np.float64)
        if tri.size != triangle_size(dim):
            raise ValueError(f"Gram triangle has {tri.size} values, expected {triangle_size(dim)}.")
        gram = np.zeros((dim, dim))
        gram[np.triu_indices(dim)] = tri
        gram = gram + np.triu(gram, 1).T
    elif GRAM_FACTOR in arrays:
        factor = np.asarray(arrays[GRAM_FACTOR], dtype=np.float64)
        gram = factor @ factor.T
    else:
        raise ValueError(f"statistics hold no Gram matrix ({GRAM_TRIANGLE} or {GRAM_FACTOR}).")
    o = np.zeros(dim) if origin is None else np.asarray(origin, dtype=np.float64)
    return ClassStatistics(np.asarray(arrays[COUNTS], dtype=np.float64), sums, gram, o)


def gram_factor(gram: np.ndarray, rtol: float = 1e-7) -> np.ndarray:
    """``F`` (d, r) with ``F F^T == gram`` (up to float error), r = numerical rank."""
    values, vectors = np.linalg.eigh(gram)
    keep = values > rtol * max(values.max(initial=0.0), 1e-300)
    return vectors[:, keep] * np.sqrt(values[keep])


def _shrunk(cov: np.ndarray, shrinkage: float) -> np.ndarray:
    dim = cov.shape[0]
    target = np.trace(cov) / dim
    shrunk = (1.0 - shrinkage) * cov + shrinkage * target * np.eye(dim)
    # keep it invertible when the data are degenerate (all-zero embeddings)
    return shrunk + 1e-9 * max(target, 1e-12) * np.eye(dim)


def solve_head(
    stats: ClassStatistics, solver: str = "lda", shrinkage: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """Weight (K, d) and bias (K,) of the linear head the statistics determine."""
    counts, sums = stats.counts, stats.sums
    n = counts.sum()
    if n <= 0:
        raise ValueError("no samples in the statistics: cannot solve a head.")
    present = counts > 0
    prior = counts / n
    shifted_mean = sums.sum(0) / n  # mean of x - origin
    if solver == "lda":
        shifted = np.zeros_like(sums)
        shifted[present] = sums[present] / counts[present, None]
        means = shifted + stats.origin
        between = (sums[present].T / counts[present]) @ sums[present]
        dof = max(n - present.sum(), 1.0)
        cov = _shrunk((stats.gram - between) / dof, shrinkage)
        weight = np.linalg.solve(cov, means.T).T
        bias = np.zeros(len(counts))
        bias[present] = -0.5 * np.sum(weight[present] * means[present], axis=1) + np.log(
            prior[present]
        )
    elif solver == "ridge":
        cov = _shrunk(stats.gram / n - np.outer(shifted_mean, shifted_mean), shrinkage)
        cross = sums.T / n - np.outer(shifted_mean, prior)  # Cov(x, onehot): (d, K)
        weight = np.linalg.solve(cov, cross).T
        bias = prior - weight @ (shifted_mean + stats.origin)
    else:
        raise ValueError(f"unknown closed-form solver '{solver}'; allowed: lda, ridge.")
    if not present.all():  # classes nobody holds: never predicted
        weight[~present] = 0.0
        bias[~present] = bias[present].min() - 1e3
    return weight.astype(np.float32), bias.astype(np.float32)
