"""trellisd --metrics: Prometheus text at /metrics, scraped while a workload
runs; the counters move by what the workload did; Prometheus' own checker
(promtool) and the prometheus_client parser accept the output. And the JSON
the status page reads."""

import json
import shutil
import subprocess
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

import trellis


def fetch(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        assert response.status == 200
        return response.read().decode(), response.headers.get("Content-Type", "")


def scrape(daemon):
    """{(name, labels as a sorted tuple): value} of one scrape, and its text."""
    text, content_type = fetch(daemon.metrics_url + "metrics")
    assert content_type.startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples, text


def value(samples, name, **labels):
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def metered(start_daemon):
    return start_daemon(metrics=0, rpc=0)


def test_counters_follow_the_workload_and_the_output_is_valid(metered):
    before, _ = scrape(metered)
    with trellis.connect(metered.socket, start=False) as c:
        ids = [c.put(np.arange(1000) + i) for i in range(20)]
        for oid in ids[:10]:
            c.get(oid)
        for _ in range(3):
            with pytest.raises(trellis.ObjectNotFound):
                c.get(name="missing")
        c.put(np.arange(10), name="named")
        status = c.status()
        after, text = scrape(metered)

    def delta(name, **labels):
        # A histogram's series appear with its first request: absent is 0.
        key = (name, tuple(sorted(labels.items())))
        return value(after, name, **labels) - before.get(key, 0)

    assert delta("trellis_requests_total", type="CreateObject") == 21
    assert delta("trellis_requests_total", type="GetMeta") == 13
    assert delta("trellis_request_duration_seconds_count", type="CreateObject") == 21
    assert value(after, "trellis_request_duration_seconds_bucket", type="CreateObject",
                 le="+Inf") == value(after, "trellis_request_duration_seconds_count",
                                     type="CreateObject")
    assert delta("trellis_request_duration_seconds_sum", type="CreateObject") > 0
    assert delta("trellis_request_errors_total", code="ObjectNotFound") == 3
    assert delta("trellis_request_errors_total", code="Invalid") == 0
    # Gauges say what Status says.
    assert value(after, "trellis_objects") == status["objects"] == 21
    assert value(after, "trellis_arena_used_bytes") == status["used"]
    assert value(after, "trellis_arena_size_bytes") == status["arena_size"]
    assert value(after, "trellis_clients") == 1  # the workload's, not the scraper's
    # The first two puts' bytes travel with them; the others go into the
    # spare blob each reply brings (docs/protocol.md, "Spare blobs").
    assert 2 * 8000 < delta("trellis_ipc_received_bytes_total") < 4 * 8000
    assert delta("trellis_ipc_sent_bytes_total") > 0
    assert ("trellis_rpc_received_bytes_total", ()) in after
    info = [k for k in after if k[0] == "trellis_info"][0]
    assert ("instance_id", str(status["instance_id"])) in info[1]
    # The metrics server's own requests are not counted.
    again, _ = scrape(metered)
    assert value(again, "trellis_requests_total", type="Status") == \
        value(after, "trellis_requests_total", type="Status")
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is missing: run scripts/install-deps.sh"
    checked = subprocess.run([promtool, "check", "metrics"], input=text, text=True,
                             capture_output=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_rpc_bytes_are_counted(metered):
    before, _ = scrape(metered)
    with trellis.connect(metered.rpc_endpoint) as remote:
        remote.put(np.arange(50000))
    after, _ = scrape(metered)
    assert value(after, "trellis_rpc_received_bytes_total") - \
        value(before, "trellis_rpc_received_bytes_total") >= 400000


def test_scrapes_during_a_workload_never_go_backwards(metered):
    stop = threading.Event()
    errors = []

    def work():
        try:
            with trellis.connect(metered.socket, start=False) as c:
                while not stop.is_set():
                    c.delete(c.put(np.arange(100)))
        except Exception as e:  # reported below
            errors.append(e)

    worker = threading.Thread(target=work)
    worker.start()
    try:
        last = 0
        for _ in range(20):
            samples, _ = scrape(metered)
            count = value(samples, "trellis_requests_total", type="CreateObject")
            assert count >= last
            last = count
    finally:
        stop.set()
        worker.join()
    assert not errors
    assert last > 0


def test_api_status_and_objects(metered):
    with trellis.connect(metered.socket, start=False) as c:
        oid = c.put(np.arange(100), name="x_train")
        status = json.loads(fetch(metered.metrics_url + "api/status")[0])
        assert status["status"]["objects"] == 1
        assert status["history"] and {"t", "used", "held", "pinned", "spilled"} <= \
            set(status["history"][0])
        objects = json.loads(fetch(metered.metrics_url + "api/objects")[0])
        assert objects["names"] == {"x_train": str(oid)}
        listed = {o["id"]: o for o in objects["objects"]}
        assert listed[str(oid)]["referrers"] == 0 and listed[str(oid)]["nbytes"] == 800
    page, content_type = fetch(metered.metrics_url)
    assert content_type.startswith("text/html") and 'id="object-count"' in page
    with pytest.raises(urllib.error.HTTPError) as e:
        fetch(metered.metrics_url + "nothing-here")
    assert e.value.code == 404


def test_bad_metrics_flags_are_refused(tmp_socket_dir):
    trellisd = trellis._daemon.find_trellisd()
    socket = tmp_socket_dir + "/m.sock"
    for flag, says in [("nonsense:port", "--metrics"), ("99999", "--metrics")]:
        out = subprocess.run([trellisd, "--socket", socket, "--size", "32M", "--metrics", flag],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode != 0 and says in out.stderr, out.stderr
