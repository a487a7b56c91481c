"""trellis.stream: the seed's parallel pandas job (examples/parallel_pandas)
against a real daemon. Output byte-identical to the serial job through a
file and through the framed TCP source and sink; order kept when workers
finish out of order; a SIGKILLed worker's batch retried; a raising
classifier named with its rows; malformed frames refused without losing
what was classified; back-pressure keeping the arena bounded."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest

import trellis
from trellis import stream

from conftest import python_env
from factories import load_example

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(REPO, "examples", "parallel_pandas")
generate = load_example(os.path.join(EXAMPLE, "generate.py"), "pp_generate")
classify_df = load_example(os.path.join(EXAMPLE, "classifier.py"), "pp_classifier").classify_df


@pytest.fixture
def env(daemon, tmp_path, monkeypatch):
    monkeypatch.setenv("TRELLIS_SOCKET", daemon.socket)
    monkeypatch.setenv("CLASSIFIER_WORK", "3")  # fast; the bench burns more
    return tmp_path


def serial(tmp_path, rows):
    """(input path, the serial job's output bytes) for `rows` rows."""
    src = tmp_path / f"in-{rows}.csv"
    generate.write(src, rows)
    out = tmp_path / f"serial-{rows}.csv"
    subprocess.run(["/usr/bin/python3", os.path.join(EXAMPLE, "old_pipeline.py"),
                    str(src), str(out)], check=True, env=python_env())
    return str(src), out.read_bytes()


@pytest.mark.parametrize("rows", [1000, 10_000])
@pytest.mark.parametrize("workers", [1, 2, 4])
def test_a_file_job_is_byte_identical_to_the_serial_one(env, rows, workers):
    src, expected = serial(env, rows)
    out = env / "parallel.csv"
    stats = (stream.from_file(src).batch(rows=100)
             .parallel(classify_df, workers=workers)
             .sink(stream.to_file(str(out))).run())
    assert out.read_bytes() == expected
    assert stats["rows_in"] == stats["rows_out"] == rows
    assert stats["batches"] == -(-rows // 100)
    assert stats["retries"] == 0


def framed_receiver():
    """(server socket, thread, result dict) of a framed receiver."""
    server = socket.create_server(("127.0.0.1", 0))
    result = {}

    def receive():
        with open(result.setdefault("path", os.devnull), "wb") if False else _Buffer(result) as out:
            result["lines"] = stream.receive_framed(server, out)

    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    return server, thread, result


class _Buffer:
    def __init__(self, result):
        self.result, self.parts = result, []

    def write(self, data):
        self.parts.append(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.result["data"] = b"".join(self.parts)


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_the_framed_tcp_source_and_sink_give_the_same_bytes(env, workers):
    src, expected = serial(env, 1000)
    server, receiver, received = framed_receiver()
    job = stream.from_tcp(port=0)
    with open(src, "rb") as f:
        lines = [line.rstrip(b"\n") for line in f]
    sender = threading.Thread(target=stream.send_framed,
                              args=(lines, "127.0.0.1", job.source.port), daemon=True)
    sender.start()
    stats = (job.batch(rows=100).parallel(classify_df, workers=workers)
             .sink(stream.to_tcp("127.0.0.1", server.getsockname()[1])).run())
    receiver.join(30)
    server.close()
    assert received["data"] == expected
    assert received["lines"] == stats["rows_out"] == 1000


def slow_on_even_batches(df):
    """Batches of even hundreds finish last: out of order on purpose."""
    if int(df.index[0]) // 100 % 2 == 0:
        time.sleep(0.05)
    return classify_df(df)


def test_order_is_kept_when_workers_finish_out_of_order(env):
    src, expected = serial(env, 2000)
    out = env / "out.csv"
    (stream.from_file(src).batch(rows=100).parallel(slow_on_even_batches, workers=4)
     .sink(stream.to_file(str(out))).run())
    assert out.read_bytes() == expected


def make_recorder(where, slow_row):
    """A classifier that notes which process classified each batch (a file
    FIRST_ROW-PID in `where`) and takes 2 s over the batch with `slow_row`."""
    def classify_and_record(df):
        open(os.path.join(where, f"{df.index[0]}-{os.getpid()}"), "w").close()
        if slow_row in df.index:
            time.sleep(2)
        return classify_df(df)
    return classify_and_record


def test_no_batch_waits_behind_a_slow_one_while_a_worker_idles(env):
    # Three batches, two workers: the first is slow. Each worker gets one
    # batch before any gets two, and the last goes to whichever worker is
    # free, not queued behind the slow one.
    src, expected = serial(env, 300)
    where = env / "who"
    where.mkdir()
    out = env / "out.csv"
    (stream.from_file(src).batch(rows=100)
     .parallel(make_recorder(str(where), slow_row=0), workers=2)
     .sink(stream.to_file(str(out))).run())
    assert out.read_bytes() == expected
    pid_of = dict(name.split("-") for name in os.listdir(where))
    assert len(pid_of) == 3
    slow, rest = pid_of.pop("0"), set(pid_of.values())
    assert rest == {next(iter(rest))} and slow not in rest, pid_of


def make_killer(marker, row):
    def classify_or_die(df):
        if row in df.index and not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)  # mid-batch, once
        return classify_df(df)
    return classify_or_die


def test_a_worker_killed_mid_batch_is_replaced_and_the_batch_retried(env):
    src, expected = serial(env, 3000)
    out = env / "out.csv"
    stats = (stream.from_file(src).batch(rows=100)
             .parallel(make_killer(str(env / "killed"), 1234), workers=2)
             .sink(stream.to_file(str(out))).run())
    assert os.path.exists(env / "killed")
    assert out.read_bytes() == expected  # nothing lost, nothing twice
    assert stats["worker_restarts"] == 1
    assert stats["retries"] >= 1


def always_dies_on_1234(df):
    if 1234 in df.index:
        os.kill(os.getpid(), signal.SIGKILL)
    return classify_df(df)


def test_a_batch_that_kills_every_worker_fails_the_job_naming_its_rows(env):
    src, _ = serial(env, 3000)
    job = (stream.from_file(src).batch(rows=100)
           .parallel(always_dies_on_1234, workers=2, retries=2)
           .sink(stream.to_file(str(env / "out.csv"))))
    with pytest.raises(stream.JobFailed, match=r"batch 12 \(rows 1201-1300\) failed: "
                       r"its worker killed by signal 9, 3 time"):
        job.run()


def raises_on_777(df):
    if 777 in df.index:
        raise ValueError("row 777 is not classifiable")
    return classify_df(df)


def test_a_raising_classifier_fails_the_job_with_the_row_range(env, daemon):
    src, expected = serial(env, 1000)
    out = env / "out.csv"
    job = (stream.from_file(src).batch(rows=100).parallel(raises_on_777, workers=2)
           .sink(stream.to_file(str(out))))
    with pytest.raises(stream.JobFailed) as e:
        job.run()
    assert "batch 7 (rows 701-800)" in str(e.value)
    assert "ValueError: row 777 is not classifiable" in str(e.value)
    # The batches before it were written, in order; nothing is left in the store.
    written = out.read_bytes()
    assert expected.startswith(written) and written.count(b"\n") >= 700
    with trellis.connect(daemon.socket, start=False) as c:
        assert c.status()["objects"] == 0


def send_raw(port, payload):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(payload)


def framed(lines):
    return b"".join(len(x).to_bytes(4, "big") + x for x in lines)


@pytest.mark.parametrize("tail, message", [
    (b"\x00\x00", r"ended inside its length \(2 of 4 bytes\)"),
    (b"\xff\xff\xff\xff", r"length 4294967295 exceeds the limit"),
    ((5).to_bytes(4, "big") + b"ab", r"ended inside its payload \(2 of 5 bytes\)"),
    (framed([b"\xff\xfe,not,utf8"]), r"not UTF-8"),
    (b"", r"without the end-of-input frame"),
])
def test_malformed_frames_fail_clearly_and_keep_what_was_classified(env, tail, message):
    src, expected = serial(env, 1000)
    with open(src, "rb") as f:
        lines = [line.rstrip(b"\n") for line in f][:251]  # header + 250 rows
    job = stream.from_tcp(port=0)
    out = env / "out.csv"
    sender = threading.Thread(target=send_raw, args=(job.source.port, framed(lines) + tail),
                              daemon=True)
    sender.start()
    with pytest.raises(stream.JobFailed, match=message) as e:
        (job.batch(rows=100).parallel(classify_df, workers=2)
         .sink(stream.to_file(str(out))).run())
    assert "250 rows before it were classified and written" in str(e.value)
    assert out.read_bytes() == b"".join(expected.splitlines(keepends=True)[:250])


def test_back_pressure_keeps_the_arena_bounded_below_the_input(start_daemon, tmp_path,
                                                               monkeypatch):
    """An input several times the arena runs through it, since at most
    max_in_flight batches exist at once."""
    small = start_daemon(size="4M", name="small")
    monkeypatch.setenv("TRELLIS_SOCKET", small.socket)
    monkeypatch.setenv("CLASSIFIER_WORK", "0")
    src = tmp_path / "big.csv"
    generate.write(src, 300_000)
    assert os.path.getsize(src) > 4 * (4 << 20)
    out = tmp_path / "out.csv"
    stats = (stream.from_file(str(src)).batch(rows=1000)
             .parallel(classify_df, workers=2, max_in_flight=4)
             .sink(stream.to_file(str(out))).run())
    assert stats["rows_out"] == 300_000
    assert stats["max_in_flight_seen"] <= 4
    batch_bytes = os.path.getsize(src) / 300  # one input batch
    assert stats["arena_used_max"] <= 4 * 3 * batch_bytes + (1 << 20)


def test_dataframes_from_python_are_batches_too(env):
    frames = [pd.DataFrame({"a": [f"r{i}-{j}" for j in range(50)]},
                           index=[str(i * 50 + j) for j in range(50)]) for i in range(20)]
    out = env / "out.csv"
    stats = (stream.from_frames(frames)
             .parallel(lambda df: df.assign(b=df["a"].str.upper()), workers=2)
             .sink(stream.to_file(str(out))).run())
    expected = pd.concat(frames).assign(b=lambda d: d["a"].str.upper()).to_csv(header=False)
    assert out.read_text() == expected
    assert stats["batches"] == 20


def test_stdin_to_stdout(env):
    src, expected = serial(env, 1000)
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from classifier import classify_df\n"
            "from trellis import stream\n"
            "stream.from_stdin().batch(rows=100).parallel(classify_df, workers=2)"
            ".sink(stream.to_stdout()).run()\n" % EXAMPLE)
    with open(src, "rb") as f:
        out = subprocess.run(["/usr/bin/python3", "-c", code], stdin=f,
                             capture_output=True, timeout=120,
                             env=python_env(TRELLIS_SOCKET=os.environ["TRELLIS_SOCKET"],
                                            CLASSIFIER_WORK="3"))
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout == expected


def test_bad_jobs_are_rejected(env):
    job = stream.from_file("/nonexistent.csv")
    with pytest.raises(trellis.InvalidArgument, match="positive int"):
        job.batch(rows=0)
    with pytest.raises(trellis.InvalidArgument, match="callable"):
        job.parallel("not a function")
    with pytest.raises(trellis.InvalidArgument, match="before run"):
        job.run()


def test_progress_shows_a_bar_rows_and_rate(env, capfd):
    src, expected = serial(env, 1000)
    out = env / "out.csv"
    (stream.from_file(src).batch(rows=100).parallel(classify_df, workers=2)
     .sink(stream.to_file(str(out))).run(progress=True))
    err = capfd.readouterr().err
    last = err.rstrip("\n").split("\r")[-1]
    assert last.startswith("[####################] 100% 1,000 rows in, 1,000 out, ")
    assert "rows/s" in last
    assert out.read_bytes() == expected


def test_with_spilling_more_in_flight_than_the_arena_holds_completes(
        start_daemon, tmp_path, monkeypatch):
    """Every batch in flight at once, twice what the arena holds: the
    daemon spills the ones waiting, the job still writes the serial bytes."""
    spill = start_daemon(size="4M", name="spill", spill_dir=str(tmp_path / "spill"))
    monkeypatch.setenv("TRELLIS_SOCKET", spill.socket)
    monkeypatch.setenv("CLASSIFIER_WORK", "0")
    src, expected = serial(tmp_path, 120_000)
    assert os.path.getsize(src) > 2 * (4 << 20)
    out = tmp_path / "out.csv"
    (stream.from_file(src).batch(rows=1000)
     .parallel(slow_on_even_batches, workers=2, max_in_flight=120)
     .sink(stream.to_file(str(out))).run())
    assert out.read_bytes() == expected
    with trellis.connect(spill.socket, start=False) as c:
        st = c.status()
        assert st["spill_count"] > 0, st  # it did need the disk
        assert st["objects"] == 0
