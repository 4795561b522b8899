"""Embedding back ends: k-means, DensitySoftmax, DtMM (+ mixture KL, monitor), cosine centre."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.metrics import roc_auc_score

from stethoscope.backends.base import BACKENDS, FitData, l2_normalise
from stethoscope.backends.cosine_centre import CosineCentreBackend
from stethoscope.backends.density_softmax import DensitySoftmaxBackend
from stethoscope.backends.dtmm import DtMMBackend, stratified_split
from stethoscope.backends.dtmm_stream import Monitor
from stethoscope.backends.factory import make_backend
from stethoscope.backends.kmeans import KMeansBackend
from stethoscope.backends.knn import KNNLocalDensity
from stethoscope.backends.mixture_kl import categorical_kl, gaussian_kl, mixture_kl
from stethoscope.state_io import load_state, save_state
from stethoscope.systems import get_system

D = 12


def _section(rng: np.random.Generator, views: int | None = None, shift: float = 0.0):
    """Three source classes (60 clips each) and one target class (10 clips) around fixed directions."""
    centres = np.random.default_rng(123).normal(size=(4, D))
    counts = [60, 60, 60, 10]
    classes = np.repeat(np.arange(4), counts)
    domains = np.where(classes == 3, "target", "source")
    base = centres[classes] + 0.35 * rng.normal(size=(len(classes), D)) + shift
    if views:
        base = base[:, None, :] + 0.15 * rng.normal(size=(len(classes), views, D))
    return base, domains, classes, centres


# ----------------------------------------------------------------------------- mixture KL
def test_gaussian_kl_zero_and_matches_monte_carlo():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 3))
    cov1 = a @ a.T + 0.5 * np.eye(3)
    b = rng.normal(size=(3, 3))
    cov2 = b @ b.T + 0.8 * np.eye(3)
    mu1, mu2 = np.array([0.2, -0.1, 0.4]), np.array([-0.3, 0.5, 0.0])
    assert gaussian_kl(mu1, cov1, mu1, cov1) == pytest.approx(0.0, abs=1e-12)

    x = rng.multivariate_normal(mu1, cov1, size=400_000)

    def logpdf(x, mu, cov):
        diff = x - mu
        sol = np.linalg.solve(cov, diff.T).T
        return -0.5 * ((diff * sol).sum(1) + np.linalg.slogdet(2 * np.pi * cov)[1])

    mc = float(np.mean(logpdf(x, mu1, cov1) - logpdf(x, mu2, cov2)))
    exact = gaussian_kl(mu1, cov1, mu2, cov2)
    assert exact > 0.5
    assert exact == pytest.approx(mc, rel=0.02)
    # diagonal form agrees with the full form on diagonal matrices
    d1, d2 = np.diag(cov1).copy(), np.diag(cov2).copy()
    assert gaussian_kl(mu1, d1, mu2, d2) == pytest.approx(
        gaussian_kl(mu1, np.diag(d1), mu2, np.diag(d2)), rel=1e-12
    )


def test_mixture_kl_zero_for_identical_and_monotone_in_mean_shift():
    w = np.array([0.5, 0.3, 0.2])
    mu = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    cov = np.stack([np.eye(2), 2 * np.eye(2), np.diag([0.5, 1.5])])
    assert mixture_kl(w, mu, cov, w, mu, cov) == pytest.approx(0.0, abs=1e-12)
    kls = []
    for s in [0.0, 0.25, 0.5, 1.0, 2.0, 4.0]:
        shifted = mu.copy()
        shifted[0] += s
        kls.append(mixture_kl(w, shifted, cov, w, mu, cov))
    assert np.all(np.diff(kls) > 0)
    # a shift of s in component 0 (unit covariance, 2 dims) costs w0 * s^2 / 2 * 2 dims
    assert kls[3] == pytest.approx(0.5 * 0.5 * 2 * 1.0**2)
    # weights only: the categorical KL term
    w2 = np.array([0.2, 0.3, 0.5])
    assert mixture_kl(w2, mu, cov, w, mu, cov) == pytest.approx(categorical_kl(w2, w))
    assert categorical_kl(w2, w) == pytest.approx(0.2 * np.log(0.4) + 0.5 * np.log(2.5))


# ----------------------------------------------------------------------------- k-means
def test_kmeans_training_point_near_zero_far_point_high_and_target_centres():
    rng = np.random.default_rng(1)
    x, dom, cls, centres = _section(rng)
    b = KMeansBackend().fit(FitData(x, dom, cls, seed=0))
    assert b.n_source_centres == 16 and len(b.centres) == 16 + 10
    # every target clip is its own centre: its score is exactly 0
    np.testing.assert_allclose(b.score(x[dom == "target"]), 0.0, atol=1e-12)
    src_scores = b.score(x[dom == "source"])
    assert src_scores.max() < 0.2
    far = -centres.sum(0, keepdims=True)  # points away from all class directions
    assert b.score(far)[0] > 0.8
    assert b.score(far)[0] > 5 * src_scores.max()


def test_kmeans_with_fewer_source_clips_than_clusters():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(8, D))
    dom = np.array(["source"] * 5 + ["target"] * 3)
    b = KMeansBackend(n_clusters=16).fit(FitData(x, dom))
    assert len(b.centres) == 8
    np.testing.assert_allclose(b.score(x), 0.0, atol=1e-12)


def test_kmeans_threshold_scores_follow_the_scoring_rule_held_out():
    rng = np.random.default_rng(3)
    x, dom, cls, _ = _section(rng)
    b = KMeansBackend().fit(FitData(x, dom, cls, seed=0))
    held = b.threshold_scores(FitData(x, dom, cls, seed=0))
    z = l2_normalise(x)
    src, tgt = z[dom == "source"], z[dom == "target"]
    # a target clip: the source centres and the other target clips (its own centre left out)
    for i in np.flatnonzero(dom == "target")[:3]:
        others = np.delete(tgt, np.flatnonzero(np.flatnonzero(dom == "target") == i), axis=0)
        centres = np.concatenate([b.centres[: b.n_source_centres], others])
        assert held[i] == pytest.approx(1 - (centres @ z[i]).max(), abs=1e-12)
    # a source clip: never 0 (its own cluster was fitted without it), and never farther than the
    # nearest target clip, which the scorer would also see
    s = held[dom == "source"]
    assert np.all(s > 0) and np.all(s <= 1 - (src @ tgt.T).max(axis=1) + 1e-12)
    assert np.median(s) > 1.2 * np.median(b.score(x[dom == "source"]))  # in-sample runs low


def test_domain_norm_layer_removes_the_target_offset():
    """Ten scattered target clips: without scaling target normals outscore source normals."""
    rng = np.random.default_rng(4)
    src_dir, tgt_dir = np.eye(D)[0], np.eye(D)[1]

    def clips(direction, n, spread):
        return direction + spread * rng.normal(size=(n, D))

    x = np.concatenate([clips(src_dir, 300, 0.1), clips(tgt_dir, 10, 0.3)])
    dom = np.array(["source"] * 300 + ["target"] * 10)
    test_s, test_t = clips(src_dir, 200, 0.1), clips(tgt_dir, 200, 0.3)
    plain = KMeansBackend().fit(FitData(x, dom, seed=0))
    scaled = make_backend("kmeans", {"domain_norm": "median"}).fit(FitData(x, dom, seed=0))

    def ratio(b):  # typical target-normal score over typical source-normal score
        return np.median(b.score(test_t)) / np.median(b.score(test_s))

    labels = np.r_[np.zeros(200), np.ones(200)]
    assert roc_auc_score(labels, np.r_[plain.score(test_s), plain.score(test_t)]) > 0.99
    assert ratio(plain) > 4 and 0.6 < ratio(scaled) < 1.6  # ten target clips: a noisy scale
    assert scaled.stats["target"][1] > 3 * scaled.stats["source"][1]
    # held-out scores: each domain's own normal clips at about 1 after the scaling
    held = scaled.threshold_scores(FitData(x, dom, seed=0))
    assert len(held) == 310 and np.all(np.isfinite(held))
    np.testing.assert_allclose(np.median(held[:300]), 1.0, rtol=0.05)
    np.testing.assert_allclose(np.median(held[300:]), 1.0, rtol=0.3)
    with pytest.raises(ValueError, match="domain_norm"):
        make_backend("kmeans", {"domain_norm": "rank"})


# ----------------------------------------------------------------------------- DensitySoftmax
@pytest.mark.parametrize(
    "reading,score",
    # not ("report", "msp"): a softmax over log-densities is confident far from every class
    [("report", "neg-logsumexp"), ("report", "min-mahalanobis"), ("refit", "msp"),
     ("refit", "neg-logsumexp"), ("refit", "min-mahalanobis")],
)  # fmt: skip
def test_density_softmax_far_points_score_higher(reading, score):
    rng = np.random.default_rng(3)
    x, dom, cls, centres = _section(rng)
    b = DensitySoftmaxBackend(reading, score).fit(FitData(x, dom, cls, seed=0))
    near = centres[cls[:40]] + 0.35 * rng.normal(size=(40, D))
    far = -centres[cls[:40]] + 1.5 * rng.normal(size=(40, D))  # away from every class Gaussian
    s_near, s_far = b.score(near), b.score(far)
    assert s_far.min() > np.median(s_near)
    assert np.mean(s_far > s_near.max()) > 0.9


def test_cnn_ds_back_end_ranks_clips_where_the_literal_softmax_ties_them():
    """The registered cnn-ds scores by the density; 1 - max softmax over the class log-densities
    (cnn-ds-msp) is 0 for most clips in many dimensions, so their ranking is lost."""
    rng = np.random.default_rng(4)
    dim = 64
    centres = rng.normal(size=(4, dim))
    cls = np.repeat(np.arange(4), [60, 60, 60, 10])
    dom = np.where(cls == 3, "target", "source")
    x = centres[cls] + 0.35 * rng.normal(size=(len(cls), dim))
    near = centres[cls[:60]] + 0.35 * rng.normal(size=(60, dim))
    off = centres[cls[:60]] + 0.6 * rng.normal(size=(60, dim))  # anomalous: spread wider
    y = np.r_[np.zeros(60), np.ones(60)]

    def fitted_scores(system: str) -> np.ndarray:
        spec = get_system(system).backend
        b = make_backend(spec.name, spec.params).fit(FitData(x, dom, cls, seed=0))
        return np.r_[b.score(near), b.score(off)]

    ds, msp = fitted_scores("cnn-ds"), fitted_scores("cnn-ds-msp")
    assert len(np.unique(ds)) == len(ds) and roc_auc_score(y, ds) > 0.95
    assert np.mean(msp == 0.0) > 0.5  # the literal reading ties most clips at zero


def test_density_softmax_class_log_densities_equal_scipy():
    from scipy.stats import multivariate_normal
    from sklearn.covariance import ledoit_wolf

    rng = np.random.default_rng(6)
    x, dom, cls, _ = _section(rng)
    b = DensitySoftmaxBackend().fit(FitData(x, dom, cls, seed=0))
    z = l2_normalise(x)
    means = np.stack([z[cls == c].mean(axis=0) for c in np.unique(cls)])
    cov = ledoit_wolf(z - means[np.searchsorted(np.unique(cls), cls)], assume_centered=True)[0]
    cov += np.eye(D) * 1e-9 * np.trace(cov) / D  # the back end's floor against singular sections
    test = l2_normalise(rng.normal(size=(7, D)) + x[:7])
    want = np.stack([multivariate_normal(m, cov).logpdf(test) for m in means], axis=1)
    np.testing.assert_allclose(b.class_log_densities(test), want, rtol=1e-9)


def test_density_softmax_density_normalisation_and_domain_classes():
    rng = np.random.default_rng(4)
    x, dom, _, centres = _section(rng)
    b = DensitySoftmaxBackend("refit").fit(FitData(x, dom, None, seed=0))  # classes = domains
    assert b.class_labels == ["source", "target"]
    dens = b.density(x)
    assert dens.max() == pytest.approx(1.0) and dens.min() > 0
    assert np.median(dens) == pytest.approx(0.5, abs=0.01)  # the calibrated temperature
    probs = b.probabilities(x)
    np.testing.assert_allclose(probs.sum(1), 1.0)
    # the refitted classifier's logits: scale * cos(x, class mean), scaled by the density
    z = l2_normalise(x[:5])
    dirs = l2_normalise(np.stack([l2_normalise(x)[dom == d].mean(0) for d in ("source", "target")]))
    np.testing.assert_allclose(b.logits(x[:5]), dens[:5, None] * 16.0 * (z @ dirs.T), rtol=1e-9)
    far = -centres[:1] * 3
    assert b.density(far)[0] < 1e-3
    # far from everything: density ~0, logits flattened, softmax ~uniform over the 2 classes
    assert b.score(far)[0] == pytest.approx(0.5, abs=1e-3)
    # the report's reading: the softmax of the class log-densities themselves
    report = DensitySoftmaxBackend("report").fit(FitData(x, dom, None, seed=0))
    np.testing.assert_allclose(
        report.probabilities(x[:5]), softmax(report.class_log_densities(z), axis=1), rtol=1e-12
    )


# ----------------------------------------------------------------------------- cosine centre
def test_cosine_centre_min_over_domain_centres():
    rng = np.random.default_rng(5)
    x, dom, cls, _ = _section(rng)
    b = CosineCentreBackend().fit(FitData(x, dom, cls))
    z = l2_normalise(x)
    cs = l2_normalise(z[dom == "source"].mean(0))
    ct = l2_normalise(z[dom == "target"].mean(0))
    test = rng.normal(size=(20, D))
    zt = l2_normalise(test)
    expected = np.minimum(1 - zt @ cs, 1 - zt @ ct)
    np.testing.assert_allclose(b.score(test), expected, rtol=1e-12, atol=1e-12)
    # target clips are judged by the target centre, which is closer to them than the source one
    tgt = z[dom == "target"]
    np.testing.assert_allclose(b.score(x[dom == "target"]), 1 - tgt @ ct, atol=1e-12)


def test_cosine_centre_per_class_fixes_the_between_classes_centre():
    """Two opposite-ish classes: their mean lies between them, so a clip on a class direction is
    farther from the pooled centre than an ambiguous clip in the middle; class centres see it right."""
    e0, e1 = np.eye(D)[0], np.eye(D)[1]
    rng = np.random.default_rng(6)
    x = np.concatenate([e0 + 0.05 * rng.normal(size=(50, D)), e1 + 0.05 * rng.normal(size=(50, D))])
    dom, cls = np.array(["source"] * 100), np.repeat([0, 1], 50)
    normal, ambiguous = e0[None], (e0 + e1)[None]
    pooled = CosineCentreBackend().fit(FitData(x, dom, cls))
    per_class = CosineCentreBackend(per="class").fit(FitData(x, dom, cls))
    assert pooled.score(ambiguous)[0] < pooled.score(normal)[0]
    assert per_class.score(ambiguous)[0] > 0.2 > per_class.score(normal)[0]
    assert len(per_class.centres) == 2 and per_class.per == "class"
    no_classes = CosineCentreBackend(per="class").fit(
        FitData(x, dom, None)
    )  # falls back to domains
    assert len(no_classes.centres) == 1
    with pytest.raises(ValueError, match="per must be"):
        CosineCentreBackend(per="machine")


# ----------------------------------------------------------------------------- DtMM
@pytest.fixture(scope="module")
def dtmm_fit():
    rng = np.random.default_rng(6)
    x, dom, cls, centres = _section(rng, views=5)
    b = DtMMBackend(n_pca=6, max_components=6).fit(FitData(x, dom, cls, seed=0))
    return b, x, dom, centres


def test_stratified_split_puts_target_in_both_sets():
    dom = np.array(["source"] * 90 + ["target"] * 10)
    model, thr = stratified_split(dom, 0.7, seed=0)
    assert len(np.intersect1d(model, thr)) == 0 and len(model) + len(thr) == 100
    assert (dom[thr] == "target").sum() == 3 and (dom[model] == "target").sum() == 7
    assert (dom[thr] == "source").sum() == 27


def test_dtmm_threshold_is_mu_plus_k_sigma_of_held_out_kls(dtmm_fit):
    b, x, dom, _ = dtmm_fit
    _, thr = stratified_split(dom, 0.7, seed=0)
    kls = b.score(x[thr])  # recompute the threshold-set KLs through the public scorer
    held = b.threshold_scores(FitData(x, dom))
    assert len(held) == len(x) and np.isnan(np.delete(held, thr)).all()  # in clip order
    np.testing.assert_allclose(held[thr], kls, rtol=1e-12)
    mu = sum(kls) / len(kls)
    sigma = (sum((v - mu) ** 2 for v in kls) / len(kls)) ** 0.5
    assert b.threshold == pytest.approx(mu + 3.0 * sigma, rel=1e-12)
    assert len(thr) == 57  # 18 of each 60-clip source class + 3 target clips
    assert 1 <= len(b.baseline.weights) <= 6 and b.baseline.weights.sum() == pytest.approx(1.0)


def test_dtmm_evolution_matches_map_formulas(dtmm_fit):
    b, x, _, _ = dtmm_fit
    base = b.baseline
    views = x[0]
    y = b.project(views)
    r = base.responsibilities(y)
    nk = r.sum(0)
    evolved = b.evolve(views)
    np.testing.assert_allclose(
        evolved.means, (b.tau * base.means + r.T @ y) / (b.tau + nk)[:, None]
    )
    w = 100.0 * base.weights + nk
    np.testing.assert_allclose(evolved.weights, w / w.sum())
    np.testing.assert_array_equal(evolved.covs, base.covs)
    assert b.score(x[:1])[0] == pytest.approx(b.kl_to_baseline(evolved))


def test_dtmm_shifted_views_get_larger_kl(dtmm_fit):
    b, _, _, centres = dtmm_fit
    rng = np.random.default_rng(7)
    normal, _, _, _ = _section(rng, views=5)
    shifted, _, _, _ = _section(rng, views=5, shift=0.6 * np.random.default_rng(8).normal(size=D))
    s_n, s_a = b.score(normal), b.score(shifted)
    assert np.median(s_a) > 2 * np.median(s_n)
    assert np.mean(s_a[:, None] > s_n[None, :]) > 0.85  # AUC
    assert np.mean(s_n > b.threshold) < 0.1 < np.mean(s_a > b.threshold)


def test_dtmm_map_covariance_and_diag_variants_run():
    rng = np.random.default_rng(9)
    x, dom, cls, _ = _section(rng, views=4)
    for kw in [
        dict(cov_update="map"),
        dict(covariance_type="diag"),
        dict(covariance_type="diag", cov_update="map"),
    ]:
        b = DtMMBackend(n_pca=5, max_components=4, **kw).fit(FitData(x, dom, cls, seed=1))
        kls = b.threshold_scores(FitData(x, dom, cls, seed=1))
        kls = kls[~np.isnan(kls)]
        assert b.threshold == pytest.approx(kls.mean() + 3.0 * kls.std(), rel=1e-12)
        # training clips evolve the baseline far less than clips pointing the other way
        assert np.median(b.score(-x[:20])) > 1.8 * np.median(b.score(x[:20]))


def _off_subspace_direction() -> np.ndarray:
    sh = np.random.default_rng(8).normal(size=D)
    return sh / np.linalg.norm(sh)


def test_dtmm_residual_dimension_sees_clips_leaving_the_pca_subspace():
    rng = np.random.default_rng(12)
    x, dom, cls, _ = _section(rng, views=5)
    normal, _, _, _ = _section(rng, views=5)
    plain = DtMMBackend(n_pca=6, max_components=6).fit(FitData(x, dom, cls, seed=0))
    with_res = DtMMBackend(n_pca=6, max_components=6, residual=True).fit(
        FitData(x, dom, cls, seed=0)
    )
    np.testing.assert_array_equal(plain.pca_components, with_res.pca_components)
    direction = _off_subspace_direction()
    direction -= plain.pca_components.T @ (
        plain.pca_components @ direction
    )  # orthogonal to the PCA
    shifted = normal + 2.0 * direction / np.linalg.norm(direction)
    aucs = {}
    for key, b in (("plain", plain), ("residual", with_res)):
        s_n, s_a = b.score(normal), b.score(shifted)
        aucs[key] = float(np.mean(s_a[:, None] > s_n[None, :]))
    assert aucs["residual"] > 0.95 and aucs["residual"] > aucs["plain"] + 0.2


def test_monitor_alerts_after_a_persistent_fault():
    rng = np.random.default_rng(6)
    x, dom, cls, _ = _section(rng, views=5)
    b = DtMMBackend(n_pca=6, max_components=6, residual=True, random_walk_var=0.1).fit(
        FitData(x, dom, cls, seed=0)
    )
    normal, _, cls_n, _ = _section(np.random.default_rng(10), views=5)
    replay, _, cls_r, _ = _section(np.random.default_rng(11), views=5)
    order = np.flatnonzero(cls_n == 0)[:15]  # one machine in one operating condition
    stream = np.concatenate([normal[order], normal[order] + 1.5 * _off_subspace_direction()])
    mon = Monitor(b, forgetting=1.0)
    t = mon.calibrate(replay[cls_r == 0][:40])
    assert (
        t > b.threshold
    )  # a carried state's KLs differ from single clips': calibrated on a stream
    steps = mon.run(stream)
    assert [s.index for s in steps] == list(range(30))
    kl = np.array([s.kl for s in steps])
    assert not any(s.alert for s in steps[:15])
    assert mon.alerts == list(range(15, 30))
    # evidence accumulates while the fault persists (the carried random walk)
    assert kl[20:].mean() > kl[15:20].mean() > 2 * kl[:15].max()
    # forgetting 0: every clip is scored on its own, exactly like the back end's scorer
    single = Monitor(b, forgetting=0.0).run(stream[:4])
    np.testing.assert_allclose([s.kl for s in single], b.score(stream[:4]), rtol=1e-12)


# ----------------------------------------------------------------------------- state round trip
@pytest.mark.parametrize(
    "name,kwargs,views",
    [
        ("kmeans", {}, None),
        ("cosine-centre", {}, None),
        ("cosine-centre", {"per": "class"}, None),
        ("density-softmax", {"reading": "report"}, None),
        ("density-softmax", {"reading": "refit", "score": "neg-logsumexp"}, None),
        ("density-softmax", {"score": "min-mahalanobis"}, None),
        ("knn-ldn", {}, None),
        ("knn-ldn", {"target_augment": "memmixup"}, None),
        ("dtmm", {"n_pca": 5, "max_components": 4}, 3),
        (
            "dtmm",
            {"n_pca": 5, "max_components": 4, "covariance_type": "diag", "cov_update": "map"},
            3,
        ),
        ("dtmm", {"n_pca": 5, "max_components": 4, "residual": True}, 3),
    ],
)
def test_state_round_trip_gives_identical_scores(tmp_path, name, kwargs, views):
    rng = np.random.default_rng(11)
    x, dom, cls, _ = _section(rng, views=views)
    backend = BACKENDS.get(name)(**kwargs).fit(FitData(x, dom, cls, seed=0))
    test, _, _, _ = _section(rng, views=views, shift=0.2)
    arrays, meta = backend.get_state()
    save_state(tmp_path, "backend", arrays, meta)
    arrays2, meta2 = load_state(tmp_path, "backend")
    restored = type(backend).from_state(arrays2, meta2)
    np.testing.assert_array_equal(restored.score(test), backend.score(test))
    data = FitData(x, dom, cls, seed=0)
    np.testing.assert_array_equal(restored.threshold_scores(data), backend.threshold_scores(data))
    if name == "dtmm":
        assert restored.threshold == backend.threshold
        np.testing.assert_array_equal(restored.held_out, backend.held_out)


def test_ensemble_averages_member_scores_and_round_trips():
    from stethoscope.backends.base import FitData
    from stethoscope.backends.ensemble import EnsembleBackend
    from stethoscope.backends.kmeans import KMeansBackend
    from stethoscope.state_io import load_state, save_state

    rng = np.random.default_rng(5)
    a = rng.normal(size=(40, 8))
    b = rng.normal(size=(40, 8)) + 1.0
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    x = np.concatenate([a, b], axis=1) / np.sqrt(2)  # two members side by side, unit length
    doms = np.array(["source"] * 36 + ["target"] * 4)
    ens = EnsembleBackend([KMeansBackend(n_clusters=4), KMeansBackend(n_clusters=4)])
    ens.fit(FitData(x, doms, seed=0))
    ka = KMeansBackend(n_clusters=4).fit(FitData(a, doms, seed=0))
    kb = KMeansBackend(n_clusters=4).fit(FitData(b, doms, seed=0))
    q = rng.normal(size=(5, 16))
    qa, qb = q[:, :8], q[:, 8:]
    qa /= np.linalg.norm(qa, axis=1, keepdims=True)
    qb /= np.linalg.norm(qb, axis=1, keepdims=True)
    xq = np.concatenate([qa, qb], axis=1) / np.sqrt(2)
    np.testing.assert_allclose(ens.score(xq), (ka.score(qa) + kb.score(qb)) / 2, atol=1e-12)
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        arrays, meta = ens.get_state()
        save_state(d, "ens", arrays, meta)
        back = EnsembleBackend.from_state(*load_state(d, "ens"))
    np.testing.assert_allclose(back.score(xq), ens.score(xq), atol=1e-12)


# ----------------------------------------------------------------------------- kNN + LDN
def test_knn_ldn_exact_copy_scores_zero_and_grows_with_distance():
    rng = np.random.default_rng(12)
    x, dom, cls, _ = _section(rng)
    b = KNNLocalDensity(k=5).fit(FitData(x, dom, cls, seed=0))
    np.testing.assert_allclose(b.score(x[:20]), 0.0, atol=1e-12)  # exact copies
    z = l2_normalise(x)
    bank = z[dom == "source"]
    # by hand for one point: distance to the nearest bank point over that point's own k-NN mean
    q = l2_normalise(x[:1] + 0.2 * rng.normal(size=(1, D)))
    d = 1 - q @ bank.T
    n = int(np.argmin(d))
    own = np.sort(1 - bank[n] @ bank.T)[1:6].mean()  # its 5 nearest others (itself excluded)
    tgt = z[dom == "target"]
    d_t = 1 - q @ tgt.T
    n_t = int(np.argmin(d_t))
    own_t = np.sort(1 - tgt[n_t] @ tgt.T)[1:6].mean()
    assert b.score(q)[0] == pytest.approx(min(d[0, n] / own, d_t[0, n_t] / own_t), rel=1e-9)
    # moving a clip away from its training neighbour only raises its score
    direction = l2_normalise(rng.normal(size=D))
    steps = [b.score(l2_normalise(x[:1] + t * direction))[0] for t in (0.0, 0.05, 0.1, 0.2, 0.4)]
    assert steps[0] == pytest.approx(0.0, abs=1e-12) and np.all(np.diff(steps) > 0)
    # held out, a training clip is no longer its own neighbour
    held = b.threshold_scores(FitData(x, dom, cls, seed=0))
    assert np.all(held > 0) and len(held) == len(x)


def test_target_augmentation_memmixup_and_smote():
    from stethoscope.backends.augment import augment_target, memmixup, smote

    rng = np.random.default_rng(13)
    src = l2_normalise(rng.normal(size=(30, D)))
    tgt = l2_normalise(rng.normal(size=(4, D)))
    mixed = memmixup(tgt, src, k=3, lam=0.8)
    assert mixed.shape == (12, D)
    nearest = np.argsort(-(tgt[0] @ src.T))[:3]
    want = l2_normalise(0.8 * tgt[0] + 0.2 * src[nearest])
    np.testing.assert_allclose(mixed[:3], want, atol=1e-12)
    new = smote(tgt, k=2, n_per_clip=5, seed=0)
    assert new.shape == (20, D)
    np.testing.assert_allclose(np.linalg.norm(new, axis=1), 1.0, atol=1e-12)
    out = augment_target(tgt, src, "memmixup", k=3)
    assert len(out) == 4 + 12 and np.array_equal(out[:4], tgt)
