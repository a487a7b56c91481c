"""A worker process of a parallel batch job: ``python3 -m
trellis.stream._worker`` with TRELLIS_SOCKET set (the daemon of its node).

Reads the job's spec (base64 of its cloudpickle) as the first line of
stdin, then one request per line, JSON ``{"seq", "id", "rows"}``: the
batch's object id in the store (CSV text as a uint8 array, or a
DataFrame). Gets it (fetch=True: it may have been put on another node),
builds the DataFrame (CSV: read_csv with the job's options), calls the
job's function, encodes the result as CSV (to_csv with the job's options)
and puts it as a uint8 array; answers ``{"seq", "id", "rows_out", "fn_s",
"parse_s", "encode_s", "store_s" (get + put; "store_cpu_s" their CPU
time), "busy_s"}``
on its stdout (the function's own prints go to stderr), or ``{"seq", "error"}`` with the traceback if the function
raised (the job decides; the worker goes on). A batch made on another
node is fetched here and its copy deleted once done; ``{"drop": id}``
deletes a result of this worker's that the coordinator has written. Exits
at the end of stdin."""

import base64
import io
import json
import os
import sys
import time
import traceback

import cloudpickle
import numpy as np

import trellis
from trellis._shipping import delete_quietly


def build_frame(spec, batch):
    import pandas as pd
    if spec["source_kind"] == "frames":
        return batch
    return pd.read_csv(io.BytesIO(memoryview(batch)), **spec["read_csv"])


def encode(spec, frame):
    text = frame.to_csv(**spec["to_csv"])
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)


def serve(spec, requests, replies):
    fn = cloudpickle.loads(spec["fn"])
    client = trellis.connect(start=False)
    here = client.status()["instance_id"]
    for line in requests:
        request = json.loads(line)
        if "drop" in request:  # a result of ours the coordinator has written
            delete_quietly(client, request["drop"])
            continue
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            batch = client.get(request["id"], fetch=True)
            t1, c1 = time.perf_counter(), time.process_time()
            frame = build_frame(spec, batch)
            t2 = time.perf_counter()
            result = fn(frame)
            t3 = time.perf_counter()
            if result is None:  # a classifier that works in place
                result = frame
            data = encode(spec, result)
            t4, c4 = time.perf_counter(), time.process_time()
            out = client.put(data)
            t5, c5 = time.perf_counter(), time.process_time()
            reply = {"seq": request["seq"], "id": int(out),
                     "rows_out": len(result), "fn_s": t3 - t2,
                     "parse_s": t2 - t1, "encode_s": t4 - t3,
                     "store_s": (t1 - t0) + (t5 - t4),
                     "store_cpu_s": (c1 - c0) + (c5 - c4), "busy_s": t5 - t0}
        except Exception:  # the job reports it with the batch's rows
            reply = {"seq": request["seq"], "error": traceback.format_exc()}
        if trellis.ObjectID(request["id"]).instance_id != here:
            delete_quietly(client, request["id"])  # the copy fetched to this node
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


def main(argv):
    # The spec is the first line of stdin (base64 cloudpickle), so that a
    # worker started on another machine (through ssh, ip netns exec...)
    # needs no file of the coordinator's.
    spec = cloudpickle.loads(base64.b64decode(sys.stdin.readline()))
    # Replies own the real stdout; whatever the job's function prints goes
    # to stderr instead of corrupting them.
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    serve(spec, sys.stdin, replies)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
