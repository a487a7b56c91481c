"""The fallback for values no other converter takes: py::Pickle.

pickle protocol 5 with out-of-band buffers: the pickle stream and every
contiguous buffer it hands out (numpy arrays, pandas blocks, PickleBuffer
users) are regions of the put's blob, and a get unpickles with read-only
views of shared memory as the buffers, so those arrays are not copied
either.
"""

import pickle

from trellis import _codec
from trellis._core import UnsupportedType

PICKLE = "py::Pickle"


def encode_pickle(value, packer):
    buffers = []

    def out_of_band(buffer):
        try:
            buffers.append(buffer.raw())
        except BufferError:
            return True  # not contiguous: keep it in the stream
        return False

    try:
        data = pickle.dumps(value, protocol=5, buffer_callback=out_of_band)
    except Exception as e:  # pickling raises many types; report them all
        raise UnsupportedType(
            f"cannot store a {type(value).__module__}.{type(value).__qualname__}: "
            f"trellis has no converter for it and pickling it failed "
            f"({type(e).__name__}: {e})") from e
    regions = [[packer.add_bytes(b), b.nbytes] for b in buffers]
    return {"typename": PICKLE,
            "fields": {"protocol": 5, "data": [packer.add_bytes(data), len(data)],
                       "buffers": regions},
            "members": {"buffer": packer.blob()}}


def decode_pickle(node, ctx):
    fields = node["fields"]
    view = memoryview(ctx.blob(node["members"]["buffer"]))
    start, size = fields["data"]
    buffers = [view[o:o + n] for o, n in fields["buffers"]]
    return pickle.loads(view[start:start + size], buffers=buffers)


_codec.DECODERS[PICKLE] = decode_pickle
