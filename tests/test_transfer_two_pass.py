"""The two-pass mode (ETran, SFDA, NCTI, LEEP from chunks) against the in-memory functions,
chunked differently, merged across shards, and on torch tensors."""

import numpy as np
import pytest

from etfcore import transfer
from etfcore.errors import (
    DTypeError,
    IncompatibleStatsError,
    LabelError,
    NonFiniteError,
    ParameterError,
    ShapeError,
)


def mixture(n=900, p=12, k=5, seed=0, sep=1.5, dtype=np.float64):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    x = 2.0 + sep * rng.normal(size=(k, p))[y] + rng.normal(size=(n, p))
    theta = rng.dirichlet(np.ones(7), size=n)
    return x.astype(dtype), y, theta


def reference(x, y, theta, **kw):
    return dict(
        etran=transfer.etran(x, y, **{k: v for k, v in kw.items() if k in ("lda_mode",)}),
        sfda=transfer.sfda(x, y, **{k: v for k, v in kw.items() if k in ("shrinkage_rule",)}),
        ncti=transfer.ncti_components(x, y),
        leep=transfer.leep(theta, y),
    )


def close(a, b, rel=1e-10):
    assert a == pytest.approx(b, rel=rel, abs=1e-13, nan_ok=True)


def check(r, ref):
    for f in ("energy", "lda", "svd", "shrinkage"):
        close(getattr(r.etran, f), getattr(ref["etran"], f))
    assert r.etran.num_energy_samples == ref["etran"].num_energy_samples
    assert r.etran.svd_rank == ref["etran"].svd_rank
    for f in ("value", "first_stage", "shrinkage"):
        close(getattr(r.sfda, f), getattr(ref["sfda"], f))
    assert r.sfda.saturated == ref["sfda"].saturated
    for f in ("seli", "ncc", "vc", "shrinkage"):
        close(getattr(r.ncti, f), getattr(ref["ncti"], f))
    close(r.leep, ref["leep"])


def run(x, y, theta, chunk, **kw):
    tp = transfer.TwoPassScores(int(y.max()) + 1, x.shape[1],
                                scores=("etran", "sfda", "ncti", "leep"), **kw)
    for p in range(tp.passes):
        for a in range(0, len(y), chunk):
            tp.feed(p, x[a:a + chunk], y[a:a + chunk], theta[a:a + chunk])
    return tp.result()


@pytest.mark.parametrize("chunk", [900, 137, 50])
def test_two_pass_equals_in_memory_for_any_chunking(chunk):
    x, y, theta = mixture()
    r = run(x, y, theta, chunk)
    assert r.passes == 3 and r.num_samples == 900
    check(r, reference(x, y, theta))


@pytest.mark.parametrize("seed,sep", [(1, 0.3), (2, 6.0)])
def test_two_pass_overlapping_and_saturated_posteriors(seed, sep):
    # sep 6: posteriors near one-hot, tiny singular values in NCTI's class matrices
    x, y, theta = mixture(n=700, p=9, k=4, seed=seed, sep=sep)
    check(run(x, y, theta, 211), reference(x, y, theta))


def test_two_pass_options_public_lda_power3_and_float32():
    x, y, theta = mixture(seed=3, dtype=np.float32)
    r = run(x, y, theta, 128, lda_mode="public", shrinkage_rule="power3")
    check(r, reference(x, y, theta, lda_mode="public", shrinkage_rule="power3"))
    assert np.isnan(r.etran.shrinkage)


def test_two_pass_absent_classes_and_many_classes():
    # labels 0, 2, 5 of K = 7 (the in-memory functions see 3 classes); K above the rows per
    # class for NCTI's factors
    x, y, theta = mixture(n=400, p=8, k=3, seed=4)
    y = np.array([0, 2, 5])[y]
    tp = transfer.TwoPassScores(7, 8, scores=("etran", "sfda", "ncti", "leep"))
    for p in range(tp.passes):
        for a in range(0, 400, 90):
            tp.feed(p, x[a:a + 90], y[a:a + 90], theta[a:a + 90])
    check(tp.result(), reference(x, y, theta))


def test_two_pass_failed_chunk_changes_nothing():
    # a chunk refused in the first pass leaves no trace in the statistics: LEEP's column count
    # is checked before they are updated
    x, y, theta = mixture(seed=8)
    tp = transfer.TwoPassScores(5, 12, scores=("etran", "sfda", "ncti", "leep"))
    tp.first_pass(x[:450], y[:450], theta[:450])
    with pytest.raises(ShapeError, match="columns"):
        tp.first_pass(x[450:], y[450:], theta[450:, :6] / theta[450:, :6].sum(1, keepdims=True))
    tp.first_pass(x[450:], y[450:], theta[450:])
    for p in (1, 2):
        tp.feed(p, x, y, theta)
    check(tp.result(), reference(x, y, theta))


def test_two_pass_refused_float32_chunk_keeps_the_float64_cut():
    # nor in the precision that sets ETran's eigenvalue cut: a float32 chunk refused (for a NaN,
    # or for LEEP's column count after the features passed) must not switch the cut to
    # float32's, which would drop the near-null direction
    x, y, theta = mixture(seed=9)
    x[:, 11] = x[:, 10] + 1e-6 * np.random.default_rng(0).normal(size=len(y))
    tp = transfer.TwoPassScores(5, 12, scores=("etran", "leep"))
    bad = x[:100].astype(np.float32)
    bad[3, 2] = np.nan
    with pytest.raises(NonFiniteError):
        tp.first_pass(bad, y[:100], theta[:100])
    tp.first_pass(x[:450], y[:450], theta[:450])
    six = theta[450:, :6] / theta[450:, :6].sum(1, keepdims=True)
    with pytest.raises(ShapeError, match="columns"):
        tp.first_pass(x[450:].astype(np.float32), y[450:], six)
    tp.first_pass(x[450:], y[450:], theta[450:]).second_pass(x, y, theta)
    ref = transfer.etran(x, y)
    assert tp.result().etran.svd_rank == ref.svd_rank == 12
    coarse = transfer.TwoPassScores(5, 12, scores=("etran",))
    coarse.first_pass(x.astype(np.float32), y).second_pass(x, y)
    assert coarse.result().etran.svd_rank == 11  # the test can tell the two cuts apart


def test_two_pass_third_pass_before_the_second_says_so():
    x, y, _ = mixture(seed=10)
    tp = transfer.TwoPassScores(5, 12, scores=("sfda",)).first_pass(x, y)
    with pytest.raises(ParameterError, match="second pass saw 0 rows"):
        tp.feed(2, x, y)


def test_two_pass_merged_across_shards_equals_whole():
    x, y, theta = mixture(seed=5)
    halves = [slice(0, 400), slice(400, 900)]
    kw = dict(scores=("etran", "sfda", "ncti", "leep"))
    a, b = transfer.TwoPassScores(5, 12, **kw), transfer.TwoPassScores(5, 12, **kw)
    for st, h in zip((a, b), halves):
        st.first_pass(x[h], y[h], theta[h])
    whole = a.merge(b).close_pass()
    for stage in (2, 3):
        shards = [whole.copy(), whole.copy()]
        for st, h in zip(shards, halves):
            (st.second_pass if stage == 2 else st.third_pass)(x[h], y[h], theta[h])
        whole = shards[0].merge(shards[1])
        if stage == 2:
            whole.close_pass()
    check(whole.result(), reference(x, y, theta))


def test_two_pass_scores_function_and_leep_only():
    x, y, theta = mixture(seed=6)
    r = transfer.two_pass_scores(lambda: ((x[a:a + 300], y[a:a + 300], theta[a:a + 300])
                                          for a in range(0, 900, 300)), 5, 12,
                                 scores=("leep",))
    assert r.passes == 2 and r.etran is None and r.sfda is None
    close(r.leep, transfer.leep(theta, y))
    logit = np.log(theta) + 3.0
    r2 = transfer.two_pass_scores(lambda: [(None, y, logit)], 5, 12, scores=("leep",),
                                  logits=True)
    close(r2.leep, transfer.leep(logit, y, logits=True))


def test_two_pass_errors():
    x, y, theta = mixture()
    with pytest.raises(ParameterError, match="subset"):
        transfer.TwoPassScores(5, 12, scores=("logme",))
    tp = transfer.TwoPassScores(5, 12, scores=("etran",))
    with pytest.raises(ShapeError, match="columns"):
        tp.first_pass(x[:, :5], y)
    with pytest.raises(NonFiniteError):
        tp.first_pass(np.where(np.arange(12) == 3, np.nan, x), y)
    with pytest.raises(LabelError):
        tp.first_pass(x, y + 5)
    tp.first_pass(x[y != 4], y[y != 4])
    with pytest.raises(LabelError, match="first pass"):
        tp.second_pass(x, y)
    tp.second_pass(x[:10], y[:10] % 4)
    with pytest.raises(ParameterError, match="incomplete"):
        tp.result()
    with pytest.raises(ParameterError, match="source_probs"):
        transfer.TwoPassScores(5, 12, scores=("leep",)).first_pass(x, y)
    with pytest.raises(ParameterError, match="sum to 1"):
        transfer.TwoPassScores(5, 12, scores=("leep",)).first_pass(x, y, theta * 2)
    a = transfer.TwoPassScores(5, 12, scores=("etran",)).first_pass(x[:500], y[:500])
    b = transfer.TwoPassScores(5, 12, scores=("etran",)).first_pass(x[500:], y[500:])
    a.close_pass()
    b.close_pass()
    with pytest.raises(IncompatibleStatsError, match="different first-pass"):
        a.merge(b)
    with pytest.raises(IncompatibleStatsError, match="different passes"):
        a.merge(transfer.TwoPassScores(5, 12, scores=("etran",)))


def _torch_run(device):
    torch = pytest.importorskip("torch")
    x, y, theta = mixture(seed=7)
    from etfcore.training import TorchTwoPassScores

    tp = TorchTwoPassScores(5, 12, scores=("etran", "sfda", "ncti", "leep"))
    t = lambda a: torch.as_tensor(a, device=device)  # noqa: E731
    for p in range(tp.passes):
        for a in range(0, 900, 256):
            tp.feed(p, t(x[a:a + 256]), t(y[a:a + 256]), t(theta[a:a + 256]))
    check(tp.result(), reference(x, y, theta))


def test_two_pass_on_torch_cpu_tensors():
    _torch_run("cpu")


def test_torch_tensors_need_device_statistics():
    torch = pytest.importorskip("torch")
    x, y, _ = mixture(seed=7)
    tp = transfer.TwoPassScores(5, 12, scores=("sfda",))
    with pytest.raises(DTypeError, match="TorchTwoPassScores"):
        tp.feed(0, torch.as_tensor(x), torch.as_tensor(y))


@pytest.mark.cuda
def test_two_pass_on_cuda_tensors():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    _torch_run("cuda")


def test_two_pass_and_stats_scores_work_without_torch():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np\n"
        "from etfcore import transfer\n"
        "rng = np.random.default_rng(0)\n"
        "y = rng.integers(0, 10, 500)\n"
        "x = rng.normal(size=(10, 64))[y] + rng.normal(size=(500, 64))\n"
        "r = transfer.two_pass_scores(lambda: [(x, y)], 10, 64, scores=('etran', 'ncti'))\n"
        "st = transfer.TransferabilityStats(10, 64).update(x, y)\n"
        "print(r.passes, transfer.emms_from_stats(st).rank, transfer.ped_from_stats(st).steps)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "2"
