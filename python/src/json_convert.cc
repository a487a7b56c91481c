#include "json_convert.h"

#include <array>
#include <cstring>
#include <string>

#include "errors.h"

namespace py = pybind11;
using nlohmann::json;

namespace trellis::python {
namespace {

constexpr int kMaxDepth = 256;

std::string TypeName(py::handle value) {
  return py::str(py::type::handle_of(value).attr("__qualname__"));
}

json IntToJson(py::handle value, const std::string& path) {
  int overflow = 0;
  long long s = PyLong_AsLongLongAndOverflow(value.ptr(), &overflow);
  if (overflow == 0) {
    if (s == -1 && PyErr_Occurred()) throw py::error_already_set();
    // Non-negative integers are stored unsigned, as C++ readers expect for
    // sizes and offsets.
    return s >= 0 ? json(static_cast<uint64_t>(s)) : json(s);
  }
  if (overflow > 0) {
    unsigned long long u = PyLong_AsUnsignedLongLong(value.ptr());
    if (!PyErr_Occurred()) return json(static_cast<uint64_t>(u));
    PyErr_Clear();
  }
  ThrowInvalid("integer at " + path +
               " does not fit in 64 bits of object metadata");
}

json Convert(py::handle value, const BlobPlaceholder* blob, int depth,
             const std::string& path) {
  if (depth > kMaxDepth) {
    ThrowInvalid("object metadata nests deeper than " +
                 std::to_string(kMaxDepth) + " levels at " + path);
  }
  PyObject* p = value.ptr();
  if (blob && value.is(blob->placeholder)) return json{{"id", blob->blob_id}};
  if (p == Py_None) return nullptr;
  if (PyBool_Check(p)) return p == Py_True;
  if (PyLong_Check(p)) return IntToJson(value, path);
  if (PyFloat_Check(p)) return PyFloat_AS_DOUBLE(p);
  if (PyUnicode_Check(p)) {
    Py_ssize_t size = 0;
    const char* utf8 = PyUnicode_AsUTF8AndSize(p, &size);
    if (!utf8) throw py::error_already_set();
    return std::string(utf8, static_cast<size_t>(size));
  }
  if (PyBytes_Check(p)) {
    auto* data = reinterpret_cast<const uint8_t*>(PyBytes_AS_STRING(p));
    return json::binary(std::vector<uint8_t>(data, data + PyBytes_GET_SIZE(p)));
  }
  if (PyDict_Check(p)) {
    json out = json::object();
    PyObject *key, *item;
    Py_ssize_t pos = 0;
    while (PyDict_Next(p, &pos, &key, &item)) {
      if (!PyUnicode_Check(key)) {
        ThrowInvalid("object metadata keys must be str, got " + TypeName(key) +
                     " at " + path);
      }
      std::string k = py::reinterpret_borrow<py::str>(key);
      out[k] = Convert(item, blob, depth + 1, path + "." + k);
    }
    return out;
  }
  if (PyList_Check(p) || PyTuple_Check(p)) {
    json out = json::array();
    py::sequence seq = py::reinterpret_borrow<py::sequence>(value);
    size_t i = 0;
    for (py::handle item : seq) {
      out.push_back(
          Convert(item, blob, depth + 1, path + "[" + std::to_string(i) + "]"));
      ++i;
    }
    return out;
  }
  if (PyIndex_Check(p)) {  // numpy integers and other int-likes
    py::object as_int = py::reinterpret_steal<py::object>(PyNumber_Index(p));
    if (!as_int) throw py::error_already_set();
    return IntToJson(as_int, path);
  }
  ThrowInvalid("cannot store a " + TypeName(value) + " in object metadata at " +
               path);
}

}  // namespace

json ToJson(py::handle value, const BlobPlaceholder* blob) {
  return Convert(value, blob, 0, "tree");
}

py::object FromJson(const json& value) {
  switch (value.type()) {
    case json::value_t::null:
      return py::none();
    case json::value_t::boolean:
      return py::bool_(value.get<bool>());
    case json::value_t::number_integer:
      return py::int_(value.get<int64_t>());
    case json::value_t::number_unsigned:
      return py::int_(value.get<uint64_t>());
    case json::value_t::number_float:
      return py::float_(value.get<double>());
    case json::value_t::string: {
      const auto& s = value.get_ref<const std::string&>();
      return py::str(s.data(), s.size());
    }
    case json::value_t::binary: {
      const auto& b = value.get_binary();
      return py::bytes(reinterpret_cast<const char*>(b.data()), b.size());
    }
    case json::value_t::array: {
      py::list out(value.size());
      size_t i = 0;
      for (const json& item : value) out[i++] = FromJson(item);
      return out;
    }
    case json::value_t::object: {
      py::dict out;
      for (const auto& [k, item] : value.items()) {
        out[py::str(k.data(), k.size())] = FromJson(item);
      }
      return out;
    }
    case json::value_t::discarded:
      break;
  }
  return py::none();
}

namespace {

// Wire limit on nesting (docs/protocol.md, "Limits").
constexpr int kMaxMsgpackDepth = 64;

class MsgpackDecoder {
 public:
  MsgpackDecoder(const uint8_t* data, size_t size)
      : p_(data), end_(data + size) {}

  py::object Decode(int depth) {
    uint8_t t = Byte();
    if (t <= 0x7f) return Steal(PyLong_FromLong(t));
    if (t >= 0xe0) return Steal(PyLong_FromLong(static_cast<int8_t>(t)));
    if ((t & 0xf0) == 0x80) return Map(t & 0x0f, depth);
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
        return Bin(Uint(1));
      case 0xc5:
        return Bin(Uint(2));
      case 0xc6:
        return Bin(Uint(4));
      case 0xc7:
        return Ext(Uint(1));
      case 0xc8:
        return Ext(Uint(2));
      case 0xc9:
        return Ext(Uint(4));
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
        return Str(Uint(1));
      case 0xda:
        return Str(Uint(2));
      case 0xdb:
        return Str(Uint(4));
      case 0xdc:
        return Array(Uint(2), depth);
      case 0xdd:
        return Array(Uint(4), depth);
      case 0xde:
        return Map(Uint(2), depth);
      case 0xdf:
        return Map(Uint(4), depth);
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
  // Short strings recur in a tree (keys, type names, dtypes): each distinct
  // one becomes one Python str, shared.
  // A direct-mapped cache (a colliding string replaces the slot's): cheap
  // enough to pay for itself on the first repeat.
  py::object Str(size_t n) {
    const char* b = reinterpret_cast<const char*>(Take(n));
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
    return Steal(PyUnicode_DecodeUTF8(b, static_cast<Py_ssize_t>(n), nullptr));
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
  py::object Map(size_t n, int depth) {
    if (depth + 1 > kMaxMsgpackDepth) Fail("nests deeper than 64 levels");
    if (n > remaining() / 2) Fail("map longer than the bytes left");
    py::object dict = Steal(PyDict_New());
    for (size_t i = 0; i < n; ++i) {
      uint8_t t = Byte();
      size_t len;
      if ((t & 0xe0) == 0xa0) {
        len = t & 0x1f;
      } else if (t >= 0xd9 && t <= 0xdb) {
        len = Uint(size_t{1} << (t - 0xd9));
      } else {
        Fail("map key is not a string");
      }
      py::object key = Str(len);
      py::object value = Decode(depth + 1);
      if (PyDict_SetItem(dict.ptr(), key.ptr(), value.ptr()) != 0) {
        throw py::error_already_set();
      }
    }
    return dict;
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
  std::array<StringSlot, kStringSlots> strings_;
};

PyObject* InternedKey(const char* text) {
  PyObject* s = PyUnicode_InternFromString(text);
  if (!s) throw py::error_already_set();
  return s;  // kept for the life of the process
}

void ValidateNode(py::handle node, int depth) {
  static PyObject* const typename_key = InternedKey("typename");
  static PyObject* const id_key = InternedKey("id");
  static PyObject* const fields_key = InternedKey("fields");
  static PyObject* const members_key = InternedKey("members");
  if (depth > 64) ThrowInvalid("object tree nests too deep");
  PyObject* p = node.ptr();
  if (!PyDict_Check(p)) ThrowInvalid("tree node must be a map");
  PyObject* id = PyDict_GetItemWithError(p, id_key);
  bool reference = false;
  if (id && PyLong_Check(id) && !PyBool_Check(id)) {
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(id, &overflow);
    reference = overflow > 0 || (overflow == 0 && v >= 0);
  }
  if (!reference) {
    PyObject* t = PyDict_GetItemWithError(p, typename_key);
    if (!t || !PyUnicode_Check(t)) {
      ThrowInvalid("tree node has no string 'typename'");
    }
  }
  PyObject* fields = PyDict_GetItemWithError(p, fields_key);
  if (fields && !PyDict_Check(fields)) ThrowInvalid("'fields' must be a map");
  PyObject* members = PyDict_GetItemWithError(p, members_key);
  if (members) {
    if (!PyDict_Check(members)) ThrowInvalid("'members' must be a map");
    PyObject *key, *member;
    Py_ssize_t pos = 0;
    while (PyDict_Next(members, &pos, &key, &member)) {
      ValidateNode(member, depth + 1);
    }
  }
  if (PyErr_Occurred()) throw py::error_already_set();
}

}  // namespace

py::object FromMsgpack(const uint8_t* data, size_t size) {
  MsgpackDecoder decoder(data, size);
  py::object value = decoder.Decode(0);
  if (!decoder.at_end()) {
    ThrowInvalid("malformed MessagePack from the daemon: trailing bytes");
  }
  return value;
}

void ValidateTree(py::handle tree) { ValidateNode(tree, 0); }

}  // namespace trellis::python
