"""Values come back exactly as they were put: the type matrix."""

import datetime
import decimal
import fractions

import numpy as np
import pandas as pd
import pytest

import trellis


def assert_same(got, want):
    """Equal values of identical types, recursively (True is not 1)."""
    assert type(got) is type(want), (type(got), type(want))
    if isinstance(want, np.ndarray):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    elif isinstance(want, pd.DataFrame):
        pd.testing.assert_frame_equal(got, want, check_exact=True, check_index_type=True,
                                      check_column_type=True, check_freq=True)
    elif isinstance(want, pd.Series):
        pd.testing.assert_series_equal(got, want, check_exact=True, check_index_type=True,
                                       check_freq=True)
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert_same(g, w)
    elif isinstance(want, dict):
        assert list(got) == list(want)
        for k in want:
            assert type(next(x for x in got if x == k)) is type(k)
            assert_same(got[k], want[k])
    elif isinstance(want, float) and want != want:
        assert got != got  # NaN
    else:
        assert got == want


NUMERIC_DTYPES = ["?", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8",
                  "c8", "c16", ">i4", ">f8", "M8[ns]", "M8[s]", "M8[D]", "m8[us]", "m8[ns]",
                  "S5", "U3"]


def _sample(dtype, shape):
    n = int(np.prod(shape))
    raw = np.arange(n, dtype=np.int64) * 7 - 11
    dtype = np.dtype(dtype)
    if dtype.kind in "SU":
        values = np.array([str(v)[-dtype.itemsize // (4 if dtype.kind == "U" else 1):]
                           for v in raw], dtype=dtype)
    elif dtype.kind == "b":
        values = (raw % 3 == 0)
    elif dtype.kind in "Mm":
        values = raw.astype(dtype)
    else:
        values = raw.astype(dtype)
    return values.reshape(shape)


@pytest.mark.parametrize("dtype", NUMERIC_DTYPES)
@pytest.mark.parametrize("layout", ["C", "F", "strided", "0-d", "empty"])
def test_ndarray(client, dtype, layout):
    if layout == "0-d":
        value = _sample(dtype, (1,)).reshape(())
    elif layout == "empty":
        value = _sample(dtype, (0, 3))
    else:
        value = _sample(dtype, (6, 5))
        if layout == "F":
            value = np.asfortranarray(value)
        elif layout == "strided":
            value = value[::2, ::-2]
    got = client.get(client.put(value))
    assert_same(got, value)
    assert not got.flags.writeable
    if layout == "F":
        assert got.flags.f_contiguous
    if layout == "strided":
        assert got.flags.c_contiguous  # made contiguous on put


def _frame(n=7):
    rng = np.arange(n)
    return pd.DataFrame({
        "i8": rng * 3 - 5, "i4": (rng % 5).astype("i4"), "u1": rng.astype("u1"),
        "f8": rng / 3, "f4": (rng * 0.5).astype("f4"), "b": rng % 2 == 0,
        "dt": pd.date_range("2024-01-01", periods=n, freq="H"),
        "dt_tz": pd.date_range("2024-03-30", periods=n, freq="6H", tz="Europe/Paris"),
        "td": pd.to_timedelta(rng, unit="s"),
        "cat": pd.Categorical(["lo", "hi", "mid", "lo", "hi", "mid", "lo"][:n],
                              categories=["lo", "mid", "hi", "unused"], ordered=True),
        "cat_int": pd.Categorical((rng % 3) * 10),
        "Int64": pd.array([1, None, 3, 4, None, 6, 7][:n], dtype="Int64"),
        "UInt8": pd.array([1, 2, None, 4, 5, 6, 7][:n], dtype="UInt8"),
        "Float64": pd.array([0.5, None, 1.5, 2, 3, 4, 5][:n], dtype="Float64"),
        "boolean": pd.array([True, None, False, True, False, None, True][:n], dtype="boolean"),
        "str": ["a", "bb", "", "ünïcödé", "日本", "x" * 100, "z"][:n],
        "str_none": ["a", None, "c", None, "e", "f", "g"][:n],
        "str_nan": ["a", np.nan, "c", "d", "e", np.nan, "g"][:n],
        "string": pd.array(["a", None, "c", "d", "e", "f", "g"][:n], dtype="string"),
        "mixed": [1, "a", 2.5, None, b"x", (1, 2), "z"][:n],
        "period": pd.period_range("2024-01", periods=n, freq="M"),
        "interval": pd.interval_range(0, n),
        "i8_again": rng * 11,
    })


FRAMES = {
    "all-kinds": _frame(),
    "numeric-46": pd.DataFrame({f"c{i}": np.arange(1000, dtype=np.int64) * i for i in range(46)}),
    "from-2d-array": pd.DataFrame(np.arange(60.).reshape(12, 5)),
    "int-labels": pd.DataFrame({1: [1, 2], 2: [3.0, 4.0], "x": ["a", "b"]}),
    "int64-index": pd.DataFrame({"v": np.arange(5)}, index=pd.Index([9, 3, 7, 1, 5], name="k")),
    "str-index": pd.DataFrame({"v": np.arange(3.)}, index=["x", "y", "z"]),
    "datetime-index": pd.DataFrame({"v": np.arange(4)},
                                   index=pd.date_range("2020", periods=4, freq="D", name="day")),
    "tz-index": pd.DataFrame({"v": np.arange(3)},
                             index=pd.date_range("2020", periods=3, tz="UTC")),
    "range-index-step": pd.DataFrame({"v": np.arange(3)}, index=pd.RangeIndex(10, 1, -3, name="r")),
    "categorical-index": pd.DataFrame({"v": [1, 2, 3]}, index=pd.CategoricalIndex(["a", "b", "a"])),
    "multiindex-rows": pd.DataFrame({"v": [1, 2, 3]},
                                    index=pd.MultiIndex.from_tuples([("a", 1), ("a", 2), ("b", 1)])),
    "multiindex-columns": pd.DataFrame(np.arange(6).reshape(2, 3),
                                       columns=pd.MultiIndex.from_tuples([("a", 1), ("a", 2), ("b", 1)])),
    "named-columns": pd.DataFrame({"a": [1]}).rename_axis(columns="cols"),
    "duplicate-labels": pd.DataFrame([[1, 2.0, 3]], columns=["a", "a", "b"]),
    "empty": pd.DataFrame(),
    "no-rows": pd.DataFrame({"a": np.array([], dtype="i8"), "s": np.array([], dtype=object)}),
    "interleaved-dtypes": pd.DataFrame({"a": [1, 2], "b": [1.0, 2.0], "c": [3, 4], "d": [3.0, 4.0]}),
    "sliced-view": pd.DataFrame(np.arange(40).reshape(10, 4)).iloc[::3, 1:],
}


@pytest.mark.parametrize("name", FRAMES)
def test_dataframe(client, name):
    frame = FRAMES[name]
    assert_same(client.get(client.put(frame)), frame)


SERIES = {
    "int": pd.Series(np.arange(5), name="n"),
    "float-no-name": pd.Series([1.5, np.nan, 3.0]),
    "str": pd.Series(["a", "b", None], name="s", index=[10, 20, 30]),
    "datetime-tz": pd.Series(pd.date_range("2022", periods=3, tz="Asia/Tokyo"), name=0),
    "categorical": pd.Series(pd.Categorical(["x", "y", "x"])),
    "nullable": pd.Series(pd.array([1, None], dtype="Int32")),
    "timedelta-index": pd.Series([1, 2], index=pd.to_timedelta([1, 2], unit="D")),
    "tuple-name": pd.Series([1, 2], name=("a", "b")),
}


@pytest.mark.parametrize("name", SERIES)
def test_series(client, name):
    series = SERIES[name]
    assert_same(client.get(client.put(series)), series)


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return type(other) is Point and (self.x, self.y) == (other.x, other.y)


BUILTINS = {
    "none": None, "true": True, "false": False, "zero": 0, "int": -42,
    "int64-min": -(1 << 63), "uint64-max": (1 << 64) - 1, "big-int": 3 ** 200,
    "negative-big-int": -(7 ** 99), "float": 2.5, "nan": float("nan"), "inf": float("-inf"),
    "str": "hello", "unicode": "héllo 日本 \U0001F600", "empty-str": "", "long-str": "ab" * 10000,
    "bytes": b"\x00\xff", "long-bytes": bytes(range(256)) * 100, "empty-bytes": b"",
    "tuple": (1, "a", None), "empty-tuple": (), "list": [1, [2, [3, [4]]]], "empty-list": [],
    "dict": {"a": 1, "b": [1, 2]}, "dict-mixed-keys": {1: "a", "b": 2, (1, 2): 3, None: 4},
    "empty-dict": {}, "dict-of-arrays": {"x": np.arange(3), "y": np.ones((2, 2))},
    "list-of-frames": [pd.DataFrame({"a": [1]}), pd.Series([1.0])],
    "long-list": list(range(20000)),
    "surrogate-str": "a\udc80b",
}


@pytest.mark.parametrize("name", BUILTINS)
def test_builtins(client, name):
    value = BUILTINS[name]
    assert_same(client.get(client.put(value)), value)


PICKLED = {
    "set": {1, 2, 3}, "frozenset": frozenset("ab"), "decimal": decimal.Decimal("1.1"),
    "fraction": fractions.Fraction(1, 3), "datetime": datetime.datetime(2024, 1, 2, 3, 4),
    "complex": 1 + 2j, "bytearray": bytearray(b"abc"), "numpy-scalar": np.float32(1.5),
    "user-class": Point(1, 2), "object-array": np.array([1, "a", None], dtype=object),
    "structured-array": np.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")]),
    "masked-array": np.ma.masked_array([1, 2, 3], mask=[0, 1, 0]),
    "index": pd.Index([1, 2, 3]), "bool-subclass-of-int": np.int64(3),
}


@pytest.mark.parametrize("name", PICKLED)
def test_pickle_fallback(client, name):
    value = PICKLED[name]
    got = client.get(client.put(value))
    assert type(got) is type(value)
    if isinstance(value, np.ma.MaskedArray):
        assert (got.mask == value.mask).all() and (got.data == value.data).all()
    elif isinstance(value, np.ndarray):
        assert got.dtype == value.dtype and got.tolist() == value.tolist()
    elif isinstance(value, pd.Index):
        pd.testing.assert_index_equal(got, value, exact=True)
    else:
        assert got == value


def test_self_referencing_list_is_pickled(client):
    value = [1, 2]
    value.append(value)
    got = client.get(client.put(value))
    assert got[:2] == [1, 2] and got[2] is got


@pytest.mark.parametrize("levels", [23, 24, 25, 60])
def test_deeply_nested_containers_round_trip(client, levels):
    """Past MAX_NESTING containers the value is pickled whole, which keeps
    the tree inside the protocol's nesting limit (the daemon would hang up
    on a deeper body); a DataFrame at the bottom still comes back."""
    frame = pd.DataFrame({"a": np.arange(3)})
    value = frame
    for i in range(levels):
        value = [value] if i % 2 else {"k": value}
    got = client.get(client.put(value))
    for i in reversed(range(levels)):
        got = got[0] if i % 2 else got["k"]
    pd.testing.assert_frame_equal(got, frame)
    assert client.get(client.put(7)) == 7  # the connection is still fine


def test_pickled_arrays_stay_out_of_band(client):
    """Arrays inside a pickled object are read from shared memory."""
    value = {1, "not a str key"}, np.arange(100000)
    value = Point(np.arange(100000), None)
    got = client.get(client.put(value))
    assert got.x.ctypes.data in client.arena
    np.testing.assert_array_equal(got.x, value.x)
