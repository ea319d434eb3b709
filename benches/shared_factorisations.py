"""CPU time of the statistics-based scores of one state — H-score, the regularised H-score,
LogME, VCI, the probe MSE and the ridge path — which share one factorisation of Σ_T.

    python benches/shared_factorisations.py N p K      # e.g. 20000 1536 100

Run it with an older etfcore on PYTHONPATH to compare: the values it prints must agree.
"""

import os
import sys
import time

import numpy as np

import etfcore as ec
from etfcore import transfer

rng = np.random.default_rng(0)
N, p, K = (int(a) for a in sys.argv[1:4]) if len(sys.argv) > 3 else (20000, 1536, 100)
means = rng.normal(size=(K, p)) * 2
y = rng.integers(0, K, size=N)
H = (means[y] + rng.normal(size=(N, p)) + 3.0).astype(np.float32)
best = float("inf")
for _ in range(3):
    xs = transfer.TransferabilityStats(K, p).update(H, y)
    t0 = time.process_time()
    st = xs.collapse_stats
    v = [
        xs.hscore(),
        xs.regularized_hscore(),
        float(xs.logme()),
        float(st.vci()),
        float(st.probe_mse()),
    ]
    st.ridge_path()
    best = min(best, time.process_time() - t0)
values = [round(float(x), 6) for x in v]
print(f"{os.path.dirname(ec.__file__)}: {best:.3f} CPU s (min of 3), values {values}")
