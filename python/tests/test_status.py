"""status(): every field the daemon reports, from the one field list
(include/trellis/store_status.h) shared by the daemon, libtrellis and this
package."""

import os

import trellis
import trellis.client


def test_status_has_every_field(start_daemon, tmp_socket_dir):
    spill = os.path.join(tmp_socket_dir, "spill")
    daemon = start_daemon(size="64M", spill_dir=spill)
    with trellis.connect(daemon.socket, start=False) as client:
        status = client.status()
    fields = trellis.client.status_fields()
    assert set(status) == set(fields)
    assert len(fields) >= 29  # what the daemon reported in issue 13
    assert all(isinstance(text, str) and text for text in fields.values())
    # Among them the ones the C++ client used to drop.
    for name in ("reserved", "spill_dir", "spill_error", "spill_high",
                 "spill_low", "spill_failures", "reload_failures",
                 "out_of_memory_count", "arena_resident_bytes",
                 "trimmed_bytes_total"):
        assert name in status, name
    assert status["arena_size"] == 64 << 20 and status["clients"] == 1
    assert status["spill_enabled"] is True and status["spill_dir"] == spill
    assert status["reserved"] is False
    assert isinstance(status["spill_high"], float)
    assert 0 < status["spill_low"] < status["spill_high"] <= 1
    assert isinstance(status["backend"], str) and status["backend"]
    assert isinstance(status["instance_id"], int)


def test_module_level_status_is_the_clients(daemon, monkeypatch):
    monkeypatch.setenv("TRELLIS_SOCKET", daemon.socket)
    monkeypatch.setattr(trellis, "_default", None)
    assert set(trellis.status()) == set(trellis.client.status_fields())
    trellis.default_client().close()
