"""Pickles written by the release before ``etfcore.stats`` became a package still load.

The blobs were written by that release (``pickle.dumps(..., protocol=4)``) from
``CollapseStats(3, 4).update(*gaussian_mixture(3, 4, 10, seed=0))``: they name
``etfcore.stats._from_bytes``, ``etfcore.stats.PinvResult``, ``etfcore.stats.NC1Split`` and
``etfcore.transfer.scores.LogMEResult`` / ``NCTIComponents``. Each loaded object is compared with
the same object computed now.
"""

import base64
import pickle

import numpy as np
import pytest

import etfcore as ec
from etfcore import transfer

STATS_BLOB = base64.b64decode(
    "gASVZQIAAAAAAAB9lCiMBXN0YXRzlIwNZXRmY29yZS5zdGF0c5SMC19mcm9tX2J5dGVzlJOUQqABAABFVEZDU1RB"
    "VAIAAAABAAAAAwAAAAAAAAAEAAAAAAAAADLWMAmCMuW/Kg9uLp+S5r8Rc4MQBP/0P1tGI4cJCu0/CgAAAAAAAAAK"
    "AAAAAAAAAAoAAAAAAAAAlo4rDLdSI0BwK9pBnfwUQOLpghlASTBAAp2e783k97+geSREInIJwLrhPt4DDSpAPXXh"
    "EGgxKEAZoLp7mvolQFjgRPZc7BnAufuVP6lFMsCCpPMh9GE8wH/Mxr0A/iLAXMoRBwBkUkDNgbWZm3dVQD9Ng45G"
    "qWNAZfRGfZqY6D//9rtTXZvjv34FKqFXDyFA5/csE7xB/j/yRuYDGZAEwAHVxFA6Uvs/ftuhKh9RGkDXufurGGYU"
    "QCXHS9wuqAvAp7EWOrugHMBD+LEUJ4kQwIRro5BHk9O/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAuqtvNhTmQ0B2"
    "lddQsGEnQNDyX6b8HlNAeiPb/axtQUDYCaOstddSQFvAjL+3d2JA136D9D0nGsCyIQKMQHI/QH/M+xdVKUZAjzo5"
    "+mRZSkAv3r3OcXzi95SFlFKUjAN2Y2mUaAKMClBpbnZSZXN1bHSUk5QoRz/YCgyr+JBWSwSMCGNob2xlc2t5lEsC"
    "dJRSlIwJbmMxX3NwbGl0lGgCjAhOQzFTcGxpdJSTlCmBlH2UKIwMYmV0d2Vlbl9zcGFulEdAAJg+lDh4RYwKb3J0"
    "aG9nb25hbJRHP/ddM5Gb2vaMBHJhbmuUSwJ1YnUu"
)

TRANSFER_BLOB = base64.b64decode(
    "gASV8wEAAAAAAAB9lCiMBWxvZ21llIwXZXRmY29yZS50cmFuc2Zlci5zY29yZXOUjAtMb2dNRVJlc3VsdJSTlCmB"
    "lH2UKIwFdmFsdWWUR7/gpeck6QXNjAlwZXJfY2xhc3OUjBZudW1weS5fY29yZS5tdWx0aWFycmF5lIwMX3JlY29u"
    "c3RydWN0lJOUjAVudW1weZSMB25kYXJyYXmUk5RLAIWUQwFilIeUUpQoSwFLA4WUaAyMBWR0eXBllJOUjAJmOJSJ"
    "iIeUUpQoSwOMATyUTk5OSv////9K/////0sAdJRiiUMY2UhQ9C0h5L9guGkFG3Hiv14gAurYvta/lHSUYowHY2xh"
    "c3Nlc5RoC2gOSwCFlGgQh5RSlChLAUsDhZRoFYwCaTiUiYiHlFKUKEsDaBlOTk5K/////0r/////SwB0lGKJQxgA"
    "AAAAAAAAAAEAAAAAAAAAAgAAAAAAAACUdJRijAppdGVyYXRpb25zlEsRjAljb252ZXJnZWSUiIwEcmFua5RLBIwG"
    "cGFyaXR5lIl1YowEbmN0aZRoAowOTkNUSUNvbXBvbmVudHOUk5QpgZR9lCiMBHNlbGmURz/wAAAAAAAAjANuY2OU"
    "Rz/gAAAAAAAAjAJ2Y5RHP9AAAAAAAACMCXNocmlua2FnZZRHP1BiTdLxqfx1YnUu"
)


def _stats():
    h, y = ec.data.gaussian_mixture(3, 4, 10, seed=0)
    return ec.CollapseStats(3, 4).update(h, y)


def test_the_blobs_name_the_old_paths():
    for name in (b"etfcore.stats", b"_from_bytes", b"PinvResult", b"NC1Split"):
        assert name in STATS_BLOB
    assert b"etfcore.transfer.scores" in TRANSFER_BLOB and b"LogMEResult" in TRANSFER_BLOB


def test_previous_release_pickles_of_statistics_load():
    old = pickle.loads(STATS_BLOB)
    st = _stats()
    assert isinstance(old["stats"], ec.CollapseStats) and old["stats"] == st
    v = st.vci()
    assert isinstance(old["vci"], ec.PinvResult)
    assert (float(old["vci"]), old["vci"].rank, old["vci"].method, old["vci"].normalizer) == (
        float(v), v.rank, v.method, v.normalizer
    )
    # the same fields; values to rounding (the geometry's summation order may change)
    o, n = old["nc1_split"], st.nc1_split()
    assert type(o) is type(n) and o.rank == n.rank
    assert (o.between_span, o.orthogonal) == pytest.approx(
        (n.between_span, n.orthogonal), rel=1e-12, abs=1e-12 * abs(n.between_span)
    )
    assert float(old["stats"].nc1()) == pytest.approx(float(st.nc1()), rel=1e-12)


def test_previous_release_pickles_of_transfer_results_load():
    old = pickle.loads(TRANSFER_BLOB)
    now = _stats().logme()
    assert isinstance(old["logme"], transfer.LogMEResult)
    assert old["logme"].value == pytest.approx(now.value, rel=1e-10)
    np.testing.assert_allclose(old["logme"].per_class, now.per_class, rtol=1e-10)
    assert old["ncti"] == transfer.NCTIComponents(1.0, 0.5, 0.25, 1e-3)


def test_new_pickles_keep_the_public_paths():
    # so that the previous release can read what this one writes
    blob = pickle.dumps({"stats": _stats(), "vci": _stats().vci()}, protocol=4)
    assert b"etfcore.stats" in blob and b"etfcore.stats.collapse" not in blob
    back = pickle.loads(blob)
    assert back["stats"] == _stats() and back["vci"] == float(_stats().vci())
