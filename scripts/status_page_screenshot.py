#!/usr/bin/python3
"""Makes docs/status_page.png: a daemon with --metrics and a spill directory
runs a small pipeline-like workload for about a minute (frames put, read,
held, spilled, deleted), then headless Chromium photographs its status page.

Usage: PYTHONPATH=build/python /usr/bin/python3 scripts/status_page_screenshot.py [OUT.png]
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd

import trellis


def main():
    out = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "docs/status_page.png")
    work = tempfile.mkdtemp(prefix="trellis-shot-")
    daemon = trellis._daemon.launch(os.path.join(work, "d.sock"), size="256M",
                                    spill_dir=os.path.join(work, "spill"), metrics=0,
                                    detach=False)
    try:
        with trellis.connect(daemon.socket, start=False) as c:
            rng = np.random.default_rng(7)
            raw = pd.DataFrame(rng.normal(size=(100_000, 46)),
                               columns=[f"f{i}" for i in range(46)])
            c.put(raw, name="housing/raw")
            held = []
            for step in range(12):
                part = raw.iloc[: 8_000 * (step + 1)]
                c.put(part, name=f"housing/x_train_{step}")
                c.put(part["f0"].to_numpy(), name=f"housing/y_train_{step}")
                if step % 3 == 0:
                    held.append(c.get(name=f"housing/x_train_{step}"))
                if step == 8:
                    c.evict(c.get_name("housing/raw"))
                if step >= 10:
                    c.delete(c.get_name(f"housing/y_train_{step - 10}"))
                time.sleep(4)
            c.put(b"model weights " * 100, name="housing/model")
            c.pin(c.get_name("housing/x_train_11"))
            time.sleep(3)
            subprocess.run(["chromium", "--headless=new", "--no-sandbox", "--disable-gpu",
                            f"--user-data-dir={work}/profile", "--hide-scrollbars",
                            "--window-size=1280,1100", "--virtual-time-budget=4000",
                            f"--screenshot={out}", daemon.metrics_url],
                           check=True, capture_output=True)
            del held
    finally:
        daemon.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(out)


if __name__ == "__main__":
    main()
