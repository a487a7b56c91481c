"""The status page (trellisd --metrics, src/server/status_page.html) in a
real browser: headless Chromium loads it from a live daemon holding
objects, runs its script, and the test reads the rendered DOM. A
screenshot is kept as an artifact: $TRELLIS_ARTIFACTS (default
build/artifacts)/status_page.png."""

import html
import os
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

import trellis
from trellis import _config

ARTIFACTS = os.environ.get("TRELLIS_ARTIFACTS",
                           os.path.join(os.path.dirname(_config.BIN_DIR), "artifacts"))


def chromium():
    path = shutil.which("chromium")
    assert path, "chromium (Debian package chromium) is missing: run scripts/install-deps.sh"
    return path


def browse(url, *extra, tmp_path):
    """Chromium's rendering of `url` after its scripts ran (virtual time:
    the page's fetches finish before the DOM is dumped)."""
    cmd = [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu",
           "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
           "--virtual-time-budget=5000", *extra, url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def rows(dom):
    """The object table's rows as lists of cell texts."""
    body = re.search(r'<tbody id="objects">(.*?)</tbody>', dom, re.S).group(1)
    return [[html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r'<tr class="object-row">(.*?)</tr>', body, re.S)]


@pytest.fixture
def shown(start_daemon):
    daemon = start_daemon(metrics=0)
    with trellis.connect(daemon.socket, start=False) as c:
        c.put(pd.DataFrame({"a": np.arange(1000), "b": np.arange(1000) * 2.0}), name="x_train")
        c.put(np.arange(200000), name="y_train")
        c.put(b"model bytes", name="model")
        c.put(np.ones(10))  # no name
        yield daemon, c


def test_the_page_shows_the_daemon_and_its_objects(shown, tmp_path):
    daemon, client = shown
    dom = browse(daemon.metrics_url, "--dump-dom", tmp_path=tmp_path)
    assert re.search(r'<span id="object-count">4</span>', dom), dom[:3000]
    assert re.search(r'<span id="name-count">3</span>', dom)
    table = rows(dom)
    by_name = {r[1]: r for r in table}
    assert set(by_name) == {"x_train", "y_train", "model", "-"}
    assert by_name["y_train"][0] == str(client.get_name("y_train"))
    assert by_name["y_train"][2] == "trellis::Tensor" and by_name["y_train"][3] == "1.53 MiB"
    assert by_name["x_train"][2] == "trellis::DataFrame"
    # Newest first by default; the status cards and the memory chart are there.
    assert f"instance {client.instance_id}" in dom
    assert "<polyline" in dom and "local metadata" in dom
    os.makedirs(ARTIFACTS, exist_ok=True)
    shot = os.path.join(ARTIFACTS, "status_page.png")
    browse(daemon.metrics_url, f"--screenshot={shot}", "--window-size=1280,1000",
           "--hide-scrollbars", tmp_path=tmp_path)
    with open(shot, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot: {shot}")


def test_filtering_and_sorting(shown, tmp_path):
    daemon, _ = shown
    filtered = rows(browse(daemon.metrics_url + "?filter=_train", "--dump-dom",
                           tmp_path=tmp_path))
    assert sorted(r[1] for r in filtered) == ["x_train", "y_train"]
    by_size = rows(browse(daemon.metrics_url + "?sort=nbytes&order=asc", "--dump-dom",
                          tmp_path=tmp_path))
    # model: 11 bytes inline in its tree (no blob, 0 bytes); the unnamed array: 80.
    assert [r[1] for r in by_size] == ["model", "-", "x_train", "y_train"]
    everything = rows(browse(daemon.metrics_url + "?all=1", "--dump-dom", tmp_path=tmp_path))
    assert len(everything) > 4 and any(r[2] == "trellis::Blob" for r in everything)


def test_the_page_says_when_the_daemon_is_gone(shown, tmp_path):
    daemon, _ = shown
    url = daemon.metrics_url
    daemon.stop()
    out = subprocess.run([chromium(), "--headless=new", "--no-sandbox", "--disable-gpu",
                          f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120)
    # Nothing serves the page now: Chromium shows its own error page.
    assert 'id="object-count"' not in out.stdout
