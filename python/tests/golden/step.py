"""The preprocess step of the housing flow in test_flow_argo.py: a script
step only exported to Argo there, never run. Writes the four splits by name
(as the seeds' preprocess-data.py does with vineyard.put)."""

import sys

import trellis

rows = int(sys.argv[sys.argv.index("--rows") + 1]) if "--rows" in sys.argv else 100
xs = [float(i) for i in range(rows)]
ys = [2.0 * x + 1.0 for x in xs]
cut = rows * 4 // 5
trellis.put(xs[:cut], name="x_train", persist=True)
trellis.put(xs[cut:], name="x_test", persist=True)
trellis.put(ys[:cut], name="y_train", persist=True)
trellis.put(ys[cut:], name="y_test", persist=True)
