#include "tree_decode.h"

#include <pybind11/numpy.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/protocol.h"
#include "common/tree_format.h"
#include "errors.h"

namespace py = pybind11;

namespace trellis::python {
namespace {

// Wire limit on nesting (docs/protocol.md, "Limits").
constexpr int kMaxMsgpackDepth = static_cast<int>(protocol::kMaxBodyDepth);
// Column positions above this are not read as blocks (the node keeps them
// as members), which bounds the duplicate check's memory.
constexpr uint64_t kMaxBlockColumns = uint64_t{1} << 24;

PyObject* InternedKey(const char* text) {
  PyObject* s = PyUnicode_InternFromString(text);
  if (!s) throw py::error_already_set();
  return s;  // kept for the life of the process
}

PyObject* InternedKey(std::string_view text) {
  PyObject* s = PyUnicode_FromStringAndSize(
      text.data(), static_cast<Py_ssize_t>(text.size()));
  if (!s) throw py::error_already_set();
  PyUnicode_InternInPlace(&s);
  return s;  // kept for the life of the process
}

// format::CheckNodeShape's adapter for trees of Python dicts (GIL held).
// A lookup error leaves the Python error set (ValidateTree raises it).
struct PyNodes {
  using Node = PyObject*;
  static PyObject* Key(format::NodeKey key) {
    static PyObject* const keys[] = {
        InternedKey(format::KeyText(format::NodeKey::kTypeName)),
        InternedKey(format::KeyText(format::NodeKey::kId)),
        InternedKey(format::KeyText(format::NodeKey::kFields)),
        InternedKey(format::KeyText(format::NodeKey::kMembers))};
    return keys[static_cast<int>(key)];
  }
  static bool IsMap(Node n) { return PyDict_Check(n); }
  static Node Find(Node map, format::NodeKey key) {
    return PyDict_GetItemWithError(map, Key(key));
  }
  static bool AsUint(Node n, uint64_t* out) {
    if (!PyLong_Check(n) || PyBool_Check(n)) return false;
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(n, &overflow);
    if (overflow == 0) {
      *out = static_cast<uint64_t>(v);
      return v >= 0;
    }
    if (overflow < 0) return false;
    unsigned long long u = PyLong_AsUnsignedLongLong(n);
    if (PyErr_Occurred()) PyErr_Clear();  // beyond 64 bits: still an id
    *out = u;
    return true;
  }
  static bool IsString(Node n) { return PyUnicode_Check(n); }
  static std::string_view Text(Node n) {
    Py_ssize_t size = 0;
    const char* utf8 = PyUnicode_AsUTF8AndSize(n, &size);
    if (!utf8) {
      PyErr_Clear();
      return {};
    }
    return std::string_view(utf8, static_cast<size_t>(size));
  }
  template <typename F>
  static Status ForEachMember(Node members, F f) {
    PyObject *key, *member;
    Py_ssize_t pos = 0;
    while (PyDict_Next(members, &pos, &key, &member)) {
      std::string_view name = PyUnicode_Check(key) ? Text(key) : "?";
      TRELLIS_RETURN_NOT_OK(f(name, member));
    }
    return Status::OK();
  }
};

bool Equals(const uint8_t* bytes, size_t size, std::string_view text) {
  return size == text.size() && std::memcmp(bytes, text.data(), size) == 0;
}

// The position i of a member named "column_<i>" (no leading zeros, so that
// names and positions map one to one), else nullopt.
std::optional<uint64_t> ColumnPosition(const uint8_t* name, size_t size) {
  constexpr std::string_view kPrefix = format::dataframe::kColumnPrefix;
  if (size <= kPrefix.size() || size > kPrefix.size() + 9 ||
      std::memcmp(name, kPrefix.data(), kPrefix.size()) != 0) {
    return std::nullopt;
  }
  const uint8_t* digits = name + kPrefix.size();
  size_t count = size - kPrefix.size();
  if (count > 1 && digits[0] == '0') return std::nullopt;
  uint64_t value = 0;
  for (size_t i = 0; i < count; ++i) {
    if (digits[i] < '0' || digits[i] > '9') return std::nullopt;
    value = value * 10 + (digits[i] - '0');
  }
  if (value >= kMaxBlockColumns) return std::nullopt;
  return value;
}

// A "column_<i>" member that is a plain column (tree_decode.h), read
// without making Python objects.
struct PlainColumn {
  uint64_t position = 0;
  std::string_view dtype;
  size_t item_size = 0;
  uint64_t rows = 0;
  uint64_t offset = 0;  // in the buffer
  uint64_t buffer_id = 0;
  std::string_view buffer_node;  // the buffer node's bytes
};

class MsgpackDecoder {
 public:
  MsgpackDecoder(const uint8_t* data, size_t size, TreeDecodeOptions options)
      : p_(data), end_(data + size), options_(options) {}

  py::object Decode(int depth) {
    const uint8_t* start = p_;
    uint8_t t = Byte();
    if (t <= 0x7f) return Steal(PyLong_FromLong(t));
    if (t >= 0xe0) return Steal(PyLong_FromLong(static_cast<int8_t>(t)));
    if ((t & 0xf0) == 0x80) return Map(t & 0x0f, depth, start);
    if ((t & 0xf0) == 0x90) return Array(t & 0x0f, depth);
    if ((t & 0xe0) == 0xa0) return Str(t & 0x1f);
    switch (t) {
      case 0xc0:
        return py::none();
      case 0xc2:
        return py::bool_(false);
      case 0xc3:
        return py::bool_(true);
      case 0xc4:
      case 0xc5:
      case 0xc6:
        return Bin(Uint(size_t{1} << (t - 0xc4)));
      case 0xc7:
      case 0xc8:
      case 0xc9:
        return Ext(Uint(size_t{1} << (t - 0xc7)));
      case 0xca: {
        uint32_t bits = static_cast<uint32_t>(Uint(4));
        float f;
        std::memcpy(&f, &bits, sizeof f);
        return Steal(PyFloat_FromDouble(f));
      }
      case 0xcb: {
        uint64_t bits = Uint(8);
        double d;
        std::memcpy(&d, &bits, sizeof d);
        return Steal(PyFloat_FromDouble(d));
      }
      case 0xcc:
      case 0xcd:
      case 0xce:
      case 0xcf:
        return Steal(PyLong_FromUnsignedLongLong(Uint(1 << (t - 0xcc))));
      case 0xd0:
        return Steal(PyLong_FromLongLong(static_cast<int8_t>(Uint(1))));
      case 0xd1:
        return Steal(PyLong_FromLongLong(static_cast<int16_t>(Uint(2))));
      case 0xd2:
        return Steal(PyLong_FromLongLong(static_cast<int32_t>(Uint(4))));
      case 0xd3:
        return Steal(PyLong_FromLongLong(static_cast<int64_t>(Uint(8))));
      case 0xd4:
      case 0xd5:
      case 0xd6:
      case 0xd7:
      case 0xd8:
        return Ext(size_t{1} << (t - 0xd4));  // fixext 1..16
      case 0xd9:
      case 0xda:
      case 0xdb:
        return Str(Uint(size_t{1} << (t - 0xd9)));
      case 0xdc:
      case 0xdd:
        return Array(Uint(size_t{2} << (t - 0xdc)), depth);
      case 0xde:
      case 0xdf:
        return Map(Uint(size_t{2} << (t - 0xde)), depth, start);
      default:
        Fail("unknown type byte");  // 0xc1
    }
  }

  bool at_end() const { return p_ == end_; }

 private:
  [[noreturn]] static void Fail(const char* what) {
    ThrowInvalid(std::string("malformed MessagePack from the daemon: ") + what);
  }
  static py::object Steal(PyObject* o) {
    if (!o) throw py::error_already_set();
    return py::reinterpret_steal<py::object>(o);
  }
  static void SetItem(py::handle dict, py::handle key, py::handle value) {
    if (PyDict_SetItem(dict.ptr(), key.ptr(), value.ptr()) != 0) {
      throw py::error_already_set();
    }
  }
  size_t remaining() const { return static_cast<size_t>(end_ - p_); }
  const uint8_t* Take(size_t n) {
    if (n > remaining()) Fail("truncated");
    const uint8_t* at = p_;
    p_ += n;
    return at;
  }
  uint8_t Byte() { return *Take(1); }
  uint64_t Uint(size_t bytes) {  // big-endian
    const uint8_t* b = Take(bytes);
    uint64_t v = 0;
    for (size_t i = 0; i < bytes; ++i) v = v << 8 | b[i];
    return v;
  }
  py::object Bin(size_t n) {
    const uint8_t* b = Take(n);
    return Steal(PyBytes_FromStringAndSize(reinterpret_cast<const char*>(b),
                                           static_cast<Py_ssize_t>(n)));
  }
  py::object Ext(size_t n) {
    Take(1);  // the ext type: dropped, as FromJson drops a binary's subtype
    return Bin(n);
  }
  py::object Str(size_t n) {
    return SharedStr(reinterpret_cast<const char*>(Take(n)), n);
  }
  // Short strings recur in a tree (keys, type names, dtypes): each distinct
  // one becomes one Python str, shared.
  // A direct-mapped cache (a colliding string replaces the slot's): cheap
  // enough to pay for itself on the first repeat.
  py::object SharedStr(const char* b, size_t n) {
    if (n > kSharedStringMax) return NewStr(b, n);
    uint32_t h = 2166136261u;  // FNV-1a
    for (size_t i = 0; i < n; ++i) {
      h = (h ^ static_cast<uint8_t>(b[i])) * 16777619u;
    }
    StringSlot& slot = strings_[h % kStringSlots];
    if (slot.value && slot.size == n && std::memcmp(slot.bytes, b, n) == 0) {
      return slot.value;
    }
    py::object s = NewStr(b, n);
    slot = {b, n, s};
    return s;
  }
  static py::object NewStr(const char* b, size_t n) {
    PyObject* s = PyUnicode_DecodeUTF8(b, static_cast<Py_ssize_t>(n), nullptr);
    if (!s && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
      PyErr_Clear();
      Fail("a string is not valid UTF-8");
    }
    return Steal(s);
  }
  py::object Array(size_t n, int depth) {
    if (depth + 1 > kMaxMsgpackDepth) Fail("nests deeper than 64 levels");
    if (n > remaining()) Fail("array longer than the bytes left");
    py::object list = Steal(PyList_New(static_cast<Py_ssize_t>(n)));
    for (size_t i = 0; i < n; ++i) {
      PyList_SET_ITEM(list.ptr(), static_cast<Py_ssize_t>(i),
                      Decode(depth + 1).release().ptr());
    }
    return list;
  }
  // A map key: the length of a str header (its bytes follow), or Fail.
  size_t KeyLength() {
    uint8_t t = Byte();
    if ((t & 0xe0) == 0xa0) return t & 0x1f;
    if (t >= 0xd9 && t <= 0xdb) return Uint(size_t{1} << (t - 0xd9));
    Fail("map key is not a string");
  }
  // A map's entry count if a map header is next (consumed), else nullopt
  // (nothing consumed).
  std::optional<size_t> MapHeader() {
    if (p_ == end_) Fail("truncated");
    uint8_t t = *p_;
    if ((t & 0xf0) == 0x80) {
      ++p_;
      return t & 0x0f;
    }
    if (t == 0xde || t == 0xdf) {
      ++p_;
      return Uint(size_t{2} << (t - 0xde));
    }
    return std::nullopt;
  }
  // `start` is where the map's header begins.
  py::object Map(size_t n, int depth, const uint8_t* start) {
    if (depth + 1 > kMaxMsgpackDepth) Fail("nests deeper than 64 levels");
    if (n > remaining() / 2) Fail("map longer than the bytes left");
    py::object dict = Steal(PyDict_New());
    // With frame_blocks, "members" is read last, once "typename" and
    // "fields" tell whether this is a DataFrame node.
    const uint8_t* members_at = nullptr;
    py::object members_key;
    for (size_t i = 0; i < n; ++i) {
      size_t length = KeyLength();
      const uint8_t* name = p_;
      py::object key = Str(length);
      if (options_.frame_blocks && Equals(name, length, format::kMembersKey)) {
        members_at = p_;
        members_key = key;
        Skip(depth + 1);
        continue;
      }
      SetItem(dict, key, Decode(depth + 1));
    }
    if (members_at != nullptr) {
      const uint8_t* end = p_;
      p_ = members_at;
      std::optional<uint64_t> rows = FrameRows(dict);
      SetItem(dict, members_key,
              rows ? FrameMembers(dict, *rows, depth + 1) : Decode(depth + 1));
      p_ = end;
      if (rows) {
        static PyObject* const raw_key = InternedKey("_raw");
        SetItem(dict, raw_key,
                Steal(PyBytes_FromStringAndSize(
                    reinterpret_cast<const char*>(start), end - start)));
        SetLabels(dict);
      }
    }
    return dict;
  }

  // Moves past one value without building it, checking it as Decode would.
  void Skip(int depth) {
    uint8_t t = Byte();
    if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3) return;
    if ((t & 0xf0) == 0x80) return SkipItems(2 * size_t{t & 0x0fu}, depth);
    if ((t & 0xf0) == 0x90) return SkipItems(t & 0x0f, depth);
    if ((t & 0xe0) == 0xa0) {
      Take(t & 0x1f);
      return;
    }
    switch (t) {
      case 0xc4:
      case 0xc5:
      case 0xc6:
        Take(Uint(size_t{1} << (t - 0xc4)));
        return;
      case 0xc7:
      case 0xc8:
      case 0xc9:
        Take(Uint(size_t{1} << (t - 0xc7)) + 1);
        return;
      case 0xca:
        Take(4);
        return;
      case 0xcb:
        Take(8);
        return;
      case 0xcc:
      case 0xcd:
      case 0xce:
      case 0xcf:
        Take(size_t{1} << (t - 0xcc));
        return;
      case 0xd0:
      case 0xd1:
      case 0xd2:
      case 0xd3:
        Take(size_t{1} << (t - 0xd0));
        return;
      case 0xd4:
      case 0xd5:
      case 0xd6:
      case 0xd7:
      case 0xd8:
        Take((size_t{1} << (t - 0xd4)) + 1);
        return;
      case 0xd9:
      case 0xda:
      case 0xdb:
        Take(Uint(size_t{1} << (t - 0xd9)));
        return;
      case 0xdc:
      case 0xdd:
        return SkipItems(Uint(size_t{2} << (t - 0xdc)), depth);
      case 0xde:
      case 0xdf: {
        size_t n = Uint(size_t{2} << (t - 0xde));
        if (n > remaining() / 2) Fail("map longer than the bytes left");
        return SkipItems(2 * n, depth);
      }
      default:
        Fail("unknown type byte");
    }
  }
  void SkipItems(size_t n, int depth) {
    if (depth + 1 > kMaxMsgpackDepth) Fail("nests deeper than 64 levels");
    if (n > remaining()) Fail("array longer than the bytes left");
    for (size_t i = 0; i < n; ++i) Skip(depth + 1);
  }

  // ---------------------------------------------------------- frame blocks

  // num_rows if `node` is a DataFrame node that can have blocks.
  static std::optional<uint64_t> FrameRows(py::handle node) {
    PyObject* typename_value =
        PyDict_GetItem(node.ptr(), PyNodes::Key(format::NodeKey::kTypeName));
    if (!typename_value || !PyUnicode_Check(typename_value) ||
        PyUnicode_CompareWithASCIIString(typename_value, format::kDataFrame) !=
            0) {
      return std::nullopt;
    }
    PyObject* fields =
        PyDict_GetItem(node.ptr(), PyNodes::Key(format::NodeKey::kFields));
    if (!fields || !PyDict_Check(fields)) return std::nullopt;
    static PyObject* const num_rows_key =
        InternedKey(format::dataframe::kNumRows);
    PyObject* rows = PyDict_GetItem(fields, num_rows_key);
    if (!rows || !PyLong_Check(rows) || PyBool_Check(rows)) return std::nullopt;
    unsigned long long value = PyLong_AsUnsignedLongLong(rows);
    if (value == static_cast<unsigned long long>(-1) && PyErr_Occurred()) {
      PyErr_Clear();
      return std::nullopt;
    }
    return value;
  }

  // Adds "_labels" to a DataFrame node whose fields hold a "columns" list.
  static void SetLabels(py::handle node) {
    PyObject* fields =
        PyDict_GetItem(node.ptr(), PyNodes::Key(format::NodeKey::kFields));
    static PyObject* const columns_key =
        InternedKey(format::dataframe::kColumns);
    PyObject* labels = PyDict_GetItem(fields, columns_key);
    if (!labels || !PyList_Check(labels)) return;
    Py_ssize_t n = PyList_GET_SIZE(labels);
    py::array values(py::dtype("O"), std::vector<py::ssize_t>{n});
    auto** slots = static_cast<PyObject**>(values.mutable_data());
    for (Py_ssize_t i = 0; i < n; ++i) {
      PyObject* label = PyList_GET_ITEM(labels, i);
      Py_INCREF(label);
      Py_XSETREF(slots[i], label);  // numpy may have filled in None
    }
    static PyObject* const labels_key = InternedKey("_labels");
    SetItem(node, labels_key, values);
  }

  // The members map of a DataFrame node with `rows` rows: plain columns go
  // to the node's "_blocks", everything else into the returned dict.
  py::object FrameMembers(py::handle node, uint64_t rows, int depth) {
    std::optional<size_t> n = MapHeader();
    if (!n) return Decode(depth);  // not a map: ValidateTree says so
    if (depth + 1 > kMaxMsgpackDepth) Fail("nests deeper than 64 levels");
    if (*n > remaining() / 2) Fail("map longer than the bytes left");
    py::object members = Steal(PyDict_New());
    std::vector<PlainColumn> plain;
    std::vector<bool> seen;
    for (size_t i = 0; i < *n; ++i) {
      size_t length = KeyLength();
      const uint8_t* name = p_;
      py::object key = Str(length);
      std::optional<uint64_t> position = ColumnPosition(name, length);
      if (position) {
        if (*position >= seen.size()) seen.resize(*position + 1);
        if (seen[*position]) {
          ThrowInvalid("DataFrame tree has member column_" +
                       std::to_string(*position) + " twice");
        }
        seen[*position] = true;
        const uint8_t* value_at = p_;
        PlainColumn column;
        if (ReadPlainTensor(&column) && column.rows == rows) {
          column.position = *position;
          plain.push_back(column);
          continue;
        }
        p_ = value_at;
      }
      SetItem(members, key, Decode(depth + 1));
    }
    static PyObject* const blocks_key = InternedKey("_blocks");
    SetItem(node, blocks_key, Blocks(plain, rows, depth));
    return members;
  }

  // (blocks, max_position) of the plain columns (tree_decode.h).
  py::object Blocks(std::vector<PlainColumn>& plain, uint64_t rows, int depth) {
    std::sort(plain.begin(), plain.end(),
              [](const PlainColumn& a, const PlainColumn& b) {
                if (a.buffer_id != b.buffer_id)
                  return a.buffer_id < b.buffer_id;
                if (a.dtype != b.dtype) return a.dtype < b.dtype;
                if (a.offset != b.offset) return a.offset < b.offset;
                return a.position < b.position;
              });
    py::list blocks;
    std::unordered_map<std::string_view, py::object> buffers;  // by node
    long long max_position = -1;
    size_t begin = 0;
    while (begin < plain.size()) {
      const PlainColumn& first = plain[begin];
      uint64_t column_bytes = 0;
      bool joinable = rows > 0 && !__builtin_mul_overflow(rows, first.item_size,
                                                          &column_bytes);
      size_t end = begin + 1;
      uint64_t step = column_bytes;
      if (joinable) {
        for (; end < plain.size(); ++end) {
          const PlainColumn& c = plain[end];
          // Same id, same node: a damaged tree may give one blob id
          // different nodes, and each column must keep its own.
          if (c.buffer_id != first.buffer_id || c.dtype != first.dtype ||
              c.buffer_node != first.buffer_node) {
            break;
          }
          uint64_t gap = c.offset - plain[end - 1].offset;
          if (end == begin + 1) {
            if (gap < column_bytes) break;
            step = gap;
          } else if (gap != step) {
            break;
          }
        }
      }
      py::object& buffer = buffers[first.buffer_node];
      if (!buffer) {
        buffer =
            DecodeAt(reinterpret_cast<const uint8_t*>(first.buffer_node.data()),
                     depth + 3);
      }
      bool consecutive = true;
      for (size_t k = begin; k < end; ++k) {
        max_position = std::max<long long>(
            max_position, static_cast<long long>(plain[k].position));
        if (k > begin && plain[k].position != plain[k - 1].position + 1) {
          consecutive = false;
        }
      }
      py::object placement;
      if (consecutive) {
        placement = Steal(
            PySlice_New(py::int_(first.position).ptr(),
                        py::int_(plain[end - 1].position + 1).ptr(), nullptr));
      } else {
        py::list positions(end - begin);
        for (size_t k = begin; k < end; ++k) {
          positions[k - begin] = py::int_(plain[k].position);
        }
        placement = std::move(positions);
      }
      blocks.append(py::make_tuple(
          buffer, SharedStr(first.dtype.data(), first.dtype.size()),
          first.offset, step, end - begin, std::move(placement)));
      begin = end;
    }
    return py::make_tuple(std::move(blocks), max_position);
  }

  py::object DecodeAt(const uint8_t* at, int depth) {
    const uint8_t* resume = p_;
    p_ = at;
    py::object value = Decode(depth);
    p_ = resume;
    return value;
  }

  // Reads a node that must have the typename `type_name`: calls
  // on_key(key) for every other key, which reads the key's value and
  // returns false if the node is not what the caller reads. False (with p_
  // anywhere in the node) if it is not a map, not of that type, or on_key
  // said so.
  template <typename OnKey>
  bool ReadNode(std::string_view type_name, OnKey on_key) {
    std::optional<size_t> n = MapHeader();
    if (!n) return false;
    bool typed = false;
    for (size_t i = 0; i < *n; ++i) {
      std::optional<std::string_view> key = RawStr();
      if (!key) return false;
      if (*key == format::kTypeNameKey) {
        std::optional<std::string_view> value = RawStr();
        if (!value || *value != type_name) return false;
        typed = true;
      } else if (!on_key(*key)) {
        return false;
      }
    }
    return typed;
  }

  static bool IsCountKey(std::string_view key) {
    return key == format::kIdKey || key == format::kInstanceIdKey ||
           key == format::kNbytesKey;
  }

  // Reads a plain column's node into `column`. False (with p_ anywhere in
  // the node) if it is anything else.
  bool ReadPlainTensor(PlainColumn* column) {
    bool has_fields = false;
    bool has_buffer = false;
    bool tensor = ReadNode(format::kTensor, [&](std::string_view key) {
      if (key == format::kFieldsKey) {
        has_fields = ReadTensorFields(column);
        return has_fields;
      }
      if (key == format::kMembersKey) {
        std::optional<size_t> m = MapHeader();
        if (!m || *m != 1 || RawStr() != format::tensor::kBuffer) return false;
        const uint8_t* node = p_;
        if (!ReadBlobNode(&column->buffer_id)) return false;
        column->buffer_node =
            std::string_view(reinterpret_cast<const char*>(node), p_ - node);
        has_buffer = true;
        return true;
      }
      return IsCountKey(key) && RawUint().has_value();
    });
    return tensor && has_fields && has_buffer;
  }

  bool ReadTensorFields(PlainColumn* column) {
    using namespace format::tensor;
    std::optional<size_t> n = MapHeader();
    if (!n) return false;
    // A node may repeat "fields"; as in a dict, the last one counts.
    column->dtype = {};
    column->item_size = 0;
    column->rows = 0;
    column->offset = 0;
    std::optional<uint64_t> stride;
    bool has_shape = false;
    for (size_t i = 0; i < *n; ++i) {
      std::optional<std::string_view> key = RawStr();
      if (!key) return false;
      if (*key == kDType) {
        std::optional<std::string_view> dtype = RawStr();
        if (!dtype) return false;
        column->dtype = *dtype;
        column->item_size = format::BlockItemSize(*dtype);
      } else if (*key == kShape) {
        std::optional<uint64_t> rows = OneUintArray();
        if (!rows) return false;
        column->rows = *rows;
        has_shape = true;
      } else if (*key == kStrides) {
        stride = OneUintArray();
        if (!stride) return false;
      } else if (*key == kOffset) {
        std::optional<uint64_t> offset = RawUint();
        if (!offset) return false;
        column->offset = *offset;
      } else {
        return false;  // e.g. "tz"
      }
    }
    return column->item_size != 0 && has_shape && stride == column->item_size;
  }

  bool ReadBlobNode(uint64_t* id) {
    bool has_id = false;
    bool has_offset = false;
    bool blob = ReadNode(format::kBlob, [&](std::string_view key) {
      bool offset = key == format::kOffsetKey;
      if (!offset && !IsCountKey(key)) return false;
      std::optional<uint64_t> value = RawUint();
      if (!value) return false;
      if (key == format::kIdKey) {
        *id = *value;
        has_id = true;
      }
      has_offset |= offset;
      return true;
    });
    return blob && has_id && has_offset;
  }

  // A str value's bytes, or nullopt if the next value is not a str.
  std::optional<std::string_view> RawStr() {
    if (p_ == end_) Fail("truncated");
    uint8_t t = *p_;
    size_t n;
    if ((t & 0xe0) == 0xa0) {
      ++p_;
      n = t & 0x1f;
    } else if (t >= 0xd9 && t <= 0xdb) {
      ++p_;
      n = Uint(size_t{1} << (t - 0xd9));
    } else {
      return std::nullopt;
    }
    return std::string_view(reinterpret_cast<const char*>(Take(n)), n);
  }

  // A non-negative int value, or nullopt if the next value is not one.
  std::optional<uint64_t> RawUint() {
    if (p_ == end_) Fail("truncated");
    uint8_t t = *p_;
    if (t <= 0x7f) {
      ++p_;
      return t;
    }
    if (t >= 0xcc && t <= 0xcf) {
      ++p_;
      return Uint(size_t{1} << (t - 0xcc));
    }
    return std::nullopt;
  }

  // The element of a one-element array of a non-negative int.
  std::optional<uint64_t> OneUintArray() {
    if (p_ == end_) Fail("truncated");
    if (*p_ != 0x91) return std::nullopt;
    ++p_;
    return RawUint();
  }

  struct StringSlot {
    const char* bytes = nullptr;  // in the input, alive while decoding
    size_t size = 0;
    py::object value;
  };
  static constexpr size_t kSharedStringMax = 32;
  static constexpr size_t kStringSlots = 256;
  const uint8_t* p_;
  const uint8_t* end_;
  TreeDecodeOptions options_;
  std::array<StringSlot, kStringSlots> strings_;
};

}  // namespace

py::object FromMsgpack(const uint8_t* data, size_t size,
                       TreeDecodeOptions options) {
  MsgpackDecoder decoder(data, size, options);
  py::object value = decoder.Decode(0);
  if (!decoder.at_end()) {
    ThrowInvalid("malformed MessagePack from the daemon: trailing bytes");
  }
  return value;
}

void ValidateTree(py::handle tree) {
  Status st = format::CheckGottenTree<PyNodes>(tree.ptr());
  if (PyErr_Occurred()) throw py::error_already_set();
  if (!st.ok()) ThrowInvalid(st.message());
}

void RegisterFormat(py::module_& m) {
  namespace f = format;
  py::module_ fm = m.def_submodule(
      "format",
      "The rules of the tree format (docs/format.md), from "
      "src/common/tree_format.h: node keys, type names, Tensor/DataFrame "
      "field and member names, the dtype table and the nesting limits.");
  auto str = [](std::string_view s) { return py::str(s.data(), s.size()); };
  // Node keys.
  fm.attr("TYPENAME") = str(f::kTypeNameKey);
  fm.attr("ID") = str(f::kIdKey);
  fm.attr("NBYTES") = str(f::kNbytesKey);
  fm.attr("INSTANCE_ID") = str(f::kInstanceIdKey);
  fm.attr("FIELDS") = str(f::kFieldsKey);
  fm.attr("MEMBERS") = str(f::kMembersKey);
  fm.attr("OFFSET") = str(f::kOffsetKey);
  // Built-in type names.
  fm.attr("BLOB") = f::kBlob;
  fm.attr("TENSOR") = f::kTensor;
  fm.attr("DATAFRAME") = f::kDataFrame;
  fm.attr("RANGE_INDEX") = f::kRangeIndex;
  fm.attr("SERIES") = f::kSeries;
  fm.attr("STRING_COLUMN") = f::kStringColumn;
  fm.attr("CATEGORICAL") = f::kCategorical;
  fm.attr("NULLABLE_COLUMN") = f::kNullableColumn;
  // trellis::Tensor.
  fm.attr("TENSOR_DTYPE") = str(f::tensor::kDType);
  fm.attr("TENSOR_SHAPE") = str(f::tensor::kShape);
  fm.attr("TENSOR_STRIDES") = str(f::tensor::kStrides);
  fm.attr("TENSOR_OFFSET") = str(f::tensor::kOffset);
  fm.attr("TENSOR_BUFFER") = str(f::tensor::kBuffer);
  // trellis::DataFrame and trellis::RangeIndex.
  fm.attr("DATAFRAME_COLUMNS") = str(f::dataframe::kColumns);
  fm.attr("DATAFRAME_NUM_ROWS") = str(f::dataframe::kNumRows);
  fm.attr("DATAFRAME_COLUMN_PREFIX") = str(f::dataframe::kColumnPrefix);
  fm.attr("DATAFRAME_BLOCK_PREFIX") = str(f::dataframe::kBlockPrefix);
  fm.attr("DATAFRAME_BLOCK_COLUMNS") = str(f::dataframe::kBlockColumns);
  fm.attr("DATAFRAME_INDEX") = str(f::dataframe::kIndex);
  fm.attr("ALIGN") = f::dataframe::kColumnAlign;
  fm.attr("RANGE_START") = str(f::range_index::kStart);
  fm.attr("RANGE_STOP") = str(f::range_index::kStop);
  fm.attr("RANGE_STEP") = str(f::range_index::kStep);
  // dtypes: kind -> (allowed counts (empty: any), bytes per count, largest
  // block item size (0: never a block)).
  py::dict kinds;
  for (const f::DTypeKind& k : f::kDTypeKinds) {
    py::list counts;
    for (uint8_t c : k.counts) {
      if (c != 0) counts.append(c);
    }
    kinds[py::str(std::string(1, k.kind))] =
        py::make_tuple(py::tuple(counts), k.bytes_per_count, k.max_block_item);
  }
  fm.attr("DTYPE_KINDS") = kinds;
  fm.attr("TENSOR_WRITE_KINDS") = str(f::kTensorWriteKinds);
  fm.attr("BLOCK_WRITE_KINDS") = str(f::kBlockWriteKinds);
  fm.def(
      "item_size",
      [](std::string_view dtype) -> py::object {
        std::optional<f::DType> d = f::ParseDType(dtype);
        if (!d) return py::none();
        return py::int_(d->item_size);
      },
      py::arg("dtype"),
      "Bytes per element of a dtype string (numpy's dtype.str), or None if "
      "the format has no such dtype.");
  fm.def("block_item_size", &f::BlockItemSize, py::arg("dtype"),
         "Item size of a dtype a DataFrame block can hold, else 0.");
  fm.attr("MAX_TREE_NESTING") = f::kMaxTreeNesting;
  fm.attr("MAX_TREE_LEVELS") = f::kMaxTreeLevels;
}

}  // namespace trellis::python
