"""Pieces shared by the housing pipeline's steps and its driver.

The pipeline is the seed documents' headline job: preprocess -> train -> test
on a synthetic 46-column house-price table, each step a separate process, the
intermediate data handed over through an "exchange" (trellis or pickle files).

Every step prints exactly one report line on stdout:

    HOUSING_REPORT {"step": ..., "exchange": ..., "total_s": ..., ...}

which the driver (run_pipeline.py) parses; everything else a step prints is
free-form.
"""

import json
import resource
import sys
import time
from contextlib import contextmanager

#: Prefix of the one machine-readable line each step prints on stdout.
REPORT_PREFIX = "HOUSING_REPORT "

#: The intermediate objects, by the names the seed code gives them.
DATA_NAMES = ("x_train", "x_test", "y_train", "y_test")
MODEL_NAME = "model"
ALL_NAMES = DATA_NAMES + (MODEL_NAME,)

EXCHANGES = ("trellis", "pickle-disk", "pickle-shm")

#: Preprocessing parameters, exactly as in the seed's preprocess.py (the seed
#: leaves random_state unset; we fix it so every variant splits identically).
MAX_GR_LIV_AREA = 4800
TARGET = "SalePrice"
TEST_SIZE = 0.2
RANDOM_STATE = 42


class StepTimer:
    """Accumulates wall-clock seconds per phase of one step.

    Phases are free-form names; the ones the driver tabulates are "load" (raw
    input), "write" and "read" (intermediate data through the exchange),
    "compute" (the step's own work) and "imports". Not thread-safe.
    """

    def __init__(self, start=None):
        # `start` lets a step count the interpreter's imports it did before
        # creating the timer (pass time.perf_counter() taken at the top).
        self._start = time.perf_counter() if start is None else start
        self.phases = {}

    @contextmanager
    def phase(self, name):
        """Times the body of a `with` block and adds it to phase `name`."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)

    def add(self, name, seconds):
        self.phases[name] = self.phases.get(name, 0.0) + seconds

    def elapsed(self):
        return time.perf_counter() - self._start


def max_rss_mib():
    """Peak resident set size of this process so far, in MiB (Linux: KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_seconds():
    """User + system CPU seconds of this process so far (its whole life:
    interpreter start-up and imports included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def minor_faults():
    """Minor page faults of this process so far. Zero-copy reads pay for
    mapping shared pages here, during compute, instead of in the read."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def emit_report(step, exchange, timer, **extra):
    """Prints the step's report line (see module doc) and flushes stdout."""
    report = {
        "step": step,
        "exchange": exchange,
        "total_s": timer.elapsed(),
        "max_rss_mib": max_rss_mib(),
        "cpu_s": cpu_seconds(),
        "minor_faults": minor_faults(),
    }
    for phase in ("imports", "load", "read", "compute", "write"):
        report[f"{phase}_s"] = timer.phases.get(phase, 0.0)
    report.update(extra)
    sys.stdout.write(REPORT_PREFIX + json.dumps(report) + "\n")
    sys.stdout.flush()


def parse_report(stdout_text):
    """Returns the report dict from a step's stdout; ValueError if absent."""
    for line in reversed(stdout_text.splitlines()):
        if line.startswith(REPORT_PREFIX):
            return json.loads(line[len(REPORT_PREFIX):])
    raise ValueError("step printed no " + REPORT_PREFIX.strip() + " line")


@contextmanager
def maybe_profile(path):
    """Runs the body under cProfile and dumps stats to `path` (if not None)."""
    if path is None:
        yield
        return
    import cProfile
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        profiler.dump_stats(path)
