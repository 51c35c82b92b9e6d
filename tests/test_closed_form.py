import numpy as np
import pytest

from fedge.closed_form import (
    GRAM_FACTOR,
    GRAM_TRIANGLE,
    ClassStatistics,
    pack,
    solve_head,
    triangle_size,
    unpack,
)


def _blobs(n_per_class=60, dim=8, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, size=(classes, dim))
    x = np.concatenate([c + rng.normal(0, 1, size=(n_per_class, dim)) for c in centers])
    y = np.repeat(np.arange(classes), n_per_class)
    return x.astype(np.float32), y


def _skewed_split(y, parts, seed=0):
    """Client index sets with strong label skew: mostly one class each."""
    rng = np.random.default_rng(seed)
    owner = np.where(rng.random(len(y)) < 0.9, y % parts, rng.integers(0, parts, len(y)))
    return [np.flatnonzero(owner == p) for p in range(parts)]


def test_summed_client_statistics_equal_the_pooled_statistics_under_label_skew():
    x, y = _blobs()
    clients = [ClassStatistics.of(x[i], y[i], 3) for i in _skewed_split(y, 3)]
    total = clients[0] + clients[1] + clients[2]
    pooled = ClassStatistics.of(x, y, 3)
    np.testing.assert_allclose(total.counts, pooled.counts)
    np.testing.assert_allclose(total.sums, pooled.sums, rtol=1e-12)
    np.testing.assert_allclose(total.gram, pooled.gram, rtol=1e-12)
    w_fed, b_fed = solve_head(total)
    w_all, b_all = solve_head(pooled)
    np.testing.assert_allclose(w_fed, w_all, rtol=1e-5)
    np.testing.assert_allclose(b_fed, b_all, rtol=1e-5)


def test_lda_matches_a_direct_computation_from_the_samples():
    x, y = _blobs(dim=5)
    x64 = x.astype(np.float64)
    means = np.stack([x64[y == k].mean(0) for k in range(3)])
    centered = x64 - means[y]
    cov = centered.T @ centered / (len(y) - 3)
    weight = np.linalg.solve(cov, means.T).T
    bias = -0.5 * np.sum(weight * means, axis=1) + np.log(np.bincount(y) / len(y))
    w, b = solve_head(ClassStatistics.of(x, y, 3), "lda", shrinkage=0.0)
    np.testing.assert_allclose(w, weight, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(b, bias, rtol=1e-4, atol=1e-4)


def test_ridge_without_shrinkage_is_least_squares_on_one_hot_labels():
    x, y = _blobs(dim=4)
    design = np.hstack([x.astype(np.float64), np.ones((len(y), 1))])
    onehot = np.eye(3)[y]
    beta = np.linalg.lstsq(design, onehot, rcond=None)[0]
    w, b = solve_head(ClassStatistics.of(x, y, 3), "ridge", shrinkage=0.0)
    np.testing.assert_allclose(w, beta[:-1].T, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(b, beta[-1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("solver", ["lda", "ridge"])
def test_closed_form_heads_separate_separable_classes(solver):
    x, y = _blobs(seed=3)
    w, b = solve_head(ClassStatistics.of(x, y, 3), solver, shrinkage=0.1)
    assert ((x @ w.T + b).argmax(1) == y).mean() > 0.97


def test_a_class_nobody_holds_is_never_predicted():
    x, y = _blobs(classes=3)
    w, b = solve_head(ClassStatistics.of(x, y, 4), "lda")  # class 3 has no samples
    assert np.all(w[3] == 0)
    assert not ((x @ w.T + b).argmax(1) == 3).any()


def test_triangle_round_trip_restores_the_symmetric_gram():
    x, y = _blobs(dim=6)
    stats = ClassStatistics.of(x, y, 3)
    arrays = pack(stats, "triangle")
    assert arrays[GRAM_TRIANGLE].size == triangle_size(6) == 21
    back = unpack(arrays)
    np.testing.assert_allclose(back.gram, stats.gram, rtol=1e-6)
    np.testing.assert_allclose(back.gram, back.gram.T)


def test_factor_is_sent_only_when_smaller_and_reproduces_the_gram():
    x, y = _blobs(n_per_class=2, dim=40)  # 6 samples, d=40: rank 6
    small = pack(ClassStatistics.of(x, y, 3), "factor")
    assert small[GRAM_FACTOR].shape == (40, 6)
    np.testing.assert_allclose(
        unpack(small).gram, ClassStatistics.of(x, y, 3).gram, rtol=1e-4, atol=1e-3
    )
    x, y = _blobs(n_per_class=40, dim=10)  # 120 samples, d=10: the triangle is smaller
    assert GRAM_TRIANGLE in pack(ClassStatistics.of(x, y, 3), "factor")


def test_no_samples_cannot_be_solved():
    with pytest.raises(ValueError, match="no samples"):
        solve_head(ClassStatistics.zeros(3, 4))


def test_statistics_about_a_shared_origin_keep_float32_messages_precise():
    x, y = _blobs(dim=6, seed=4)
    x = x + 200.0  # embeddings far from zero, like pooled ReLU features
    exact_w, _ = solve_head(ClassStatistics.of(x, y, 3))

    def via_float32(origin):
        clients = _skewed_split(y, 3)
        parts = [unpack(pack(ClassStatistics.of(x[i], y[i], 3, origin)), origin) for i in clients]
        return solve_head(parts[0] + parts[1] + parts[2])[0]

    def error(w):
        return np.linalg.norm(w - exact_w) / np.linalg.norm(exact_w)

    assert error(via_float32(x.mean(0))) < 1e-4 < error(via_float32(None))


def test_statistics_about_different_origins_do_not_add():
    x, y = _blobs(dim=2)
    with pytest.raises(ValueError, match="different origins"):
        ClassStatistics.of(x, y, 3) + ClassStatistics.of(x, y, 3, np.ones(2))
