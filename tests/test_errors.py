"""Bad input: a typed ValueError that names the problem, never a crash."""

import numpy as np
import pytest

import etfcore as ec


def test_hierarchy():
    for name in ec.errors.__all__:
        cls = getattr(ec, name)
        assert issubclass(cls, ec.EtfcoreError) and issubclass(cls, ValueError)


def test_update_errors():
    st = ec.CollapseStats(3, 4)
    H = np.ones((5, 4))
    with pytest.raises(ec.ShapeError, match="2-D"):
        st.update(np.ones(4), [0])
    with pytest.raises(ec.ShapeError, match="columns"):
        st.update(np.ones((5, 3)), np.zeros(5, int))
    with pytest.raises(ec.ShapeError, match="5 rows"):
        st.update(H, np.zeros(4, int))
    with pytest.raises(ec.DTypeError, match="int64"):
        st.update(np.ones((5, 4), dtype=np.int64), np.zeros(5, int))
    with pytest.raises(ec.DTypeError, match="float16"):
        st.update(np.ones((5, 4), dtype=np.float16), np.zeros(5, int))
    with pytest.raises(ec.LabelError, match="label -1 at index 2"):
        st.update(H, [0, 1, -1, 0, 1])
    with pytest.raises(ec.LabelError, match="label 3 at index 4"):
        st.update(H, [0, 1, 2, 0, 3])
    with pytest.raises(ec.LabelError, match="integers"):
        st.update(H, [0.0, 1.0, 2.0, 0.0, 1.5])
    with pytest.raises(ec.LabelError, match="integers"):
        st.update(H, np.array([True, False, True, False, True]))
    Hn = H.copy()
    Hn[3, 1] = np.nan
    with pytest.raises(ec.NonFiniteError, match="row 3, column 1"):
        st.update(Hn, np.zeros(5, int))
    assert st.num_samples == 0


def test_too_few_classes():
    st = ec.CollapseStats(3, 4).update(
        np.random.default_rng(0).normal(size=(10, 4)), np.zeros(10, int)
    )
    with pytest.raises(ec.TooFewClassesError, match="only 1 present"):
        st.vci()
    with pytest.raises(ec.TooFewClassesError):
        ec.CollapseStats(3, 4).nc1()
    with pytest.raises(ec.TooFewClassesError):
        st.cosine_metrics()


def test_etf_errors():
    with pytest.raises(ec.DimensionError, match="dim >= K-1 = 9"):
        ec.etf(10, 8)
    with pytest.raises(ec.DimensionError):
        ec.etf(1, 8)
    with pytest.raises(ec.DimensionError, match="dim >= K = 5"):
        ec.orthogonal_frame(5, 4)
    with pytest.raises(ec.ShapeError):
        ec.etf(3, 4, lengths=[1.0, 2.0])
    with pytest.raises(ec.ParameterError):
        ec.etf(3, 4, lengths=[1.0, 0.0, 1.0])
    with pytest.raises(ec.ParameterError):
        ec.etf(3, 4, dtype=np.int32)


def test_parameter_errors():
    rng = np.random.default_rng(0)
    st = ec.CollapseStats(3, 4).update(rng.normal(size=(30, 4)), np.arange(30) % 3)
    with pytest.raises(ec.ParameterError, match="weighting"):
        st.vci("uniform")
    with pytest.raises(ec.ParameterError, match="normalizer"):
        st.vci(normalizer="max")
    with pytest.raises(ec.ParameterError, match="either rank or rtol"):
        st.vci(rank=2, rtol=1e-3)
    with pytest.raises(ec.ParameterError, match="rank=9"):
        st.nc1(rank=9)
    with pytest.raises(ec.ShapeError):
        st.nc3(np.ones((2, 4)))
    with pytest.raises(ec.ShapeError):
        st.nc4(np.ones((5, 4)), np.ones((3, 4)), bias=np.ones(2))
    with pytest.raises(ec.ParameterError, match="track_class_scatter"):
        st.class_covariance(0)


def test_cosine_refuses_zero_rows():
    H = np.random.default_rng(0).normal(size=(12, 3))
    H[4] = 0
    st = ec.CollapseStats(2, 3).update(H, np.arange(12) % 2)
    with pytest.raises(ec.DegenerateInputError, match="1 all-zero rows"):
        st.cosine_metrics()
    assert "cosine_within" not in st.metrics()  # the other metrics are fine


def test_pinv_errors():
    with pytest.raises(ec.ShapeError):
        ec.pinv_psd(np.ones((2, 3)))
    with pytest.raises(ec.NonFiniteError):
        ec.pinv_psd(np.array([[1.0, np.nan], [np.nan, 1.0]]))
    with pytest.raises(ec.NumericalError, match="positive"):
        ec.pinv_psd(np.diag([1.0, 0.0]), rank=2)


def test_absurd_sizes_are_errors_not_aborts():
    with pytest.raises(ec.DimensionError, match="too large"):
        ec.CollapseStats(10**9, 10**6)
    with pytest.raises(ec.DimensionError, match="too large"):
        ec.CollapseStats(2, 10**6)  # a 10^6 × 10^6 scatter
    with pytest.raises(ec.DimensionError, match="too large"):
        ec.etf(10**6, 10**6)
    with pytest.raises(ec.DimensionError, match="too large"):
        ec.orthogonal_frame(10**6, 10**6)
    from etfcore import rf

    with pytest.raises(ec.DimensionError, match="too large"):
        rf.projection(10**7, 10**6, seed=0)
