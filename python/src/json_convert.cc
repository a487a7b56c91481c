#include "json_convert.h"

#include <array>
#include <cstring>
#include <string>
#include <string_view>

#include "common/protocol.h"
#include "errors.h"

namespace py = pybind11;
using nlohmann::json;

namespace trellis::python {
namespace {

std::string TypeName(py::handle value) {
  return py::str(py::type::handle_of(value).attr("__qualname__"));
}

// Where a value sits in the tree, built only when an error names it.
struct PathStep {
  const PathStep* parent;
  const char* key;  // a map key, or nullptr for a list index
  size_t index;
};

std::string PathText(const PathStep* step) {
  if (!step) return "tree";
  std::string parent = PathText(step->parent);
  return step->key ? parent + "." + step->key
                   : parent + "[" + std::to_string(step->index) + "]";
}

void IntToMsgpack(py::handle value, const PathStep* path,
                  std::vector<uint8_t>* out) {
  int overflow = 0;
  long long s = PyLong_AsLongLongAndOverflow(value.ptr(), &overflow);
  if (overflow == 0) {
    if (s == -1 && PyErr_Occurred()) throw py::error_already_set();
    return protocol::AppendMsgpackInt(s, out);
  }
  if (overflow > 0) {
    unsigned long long u = PyLong_AsUnsignedLongLong(value.ptr());
    if (!PyErr_Occurred()) return protocol::AppendMsgpackUint(u, out);
    PyErr_Clear();
  }
  ThrowInvalid("integer at " + PathText(path) +
               " does not fit in 64 bits of object metadata");
}

void Encode(py::handle value, const BlobPlaceholder* blob, int depth,
            const PathStep* path, std::vector<uint8_t>* out) {
  PyObject* p = value.ptr();
  bool container = PyDict_Check(p) || PyList_Check(p) || PyTuple_Check(p) ||
                   (blob && value.is(blob->placeholder));
  if (container && depth + 1 > static_cast<int>(protocol::kMaxBodyDepth)) {
    ThrowInvalid("object tree nests deeper than the protocol's " +
                 std::to_string(protocol::kMaxBodyDepth) +
                 " levels of maps and arrays at " + PathText(path));
  }
  if (blob && value.is(blob->placeholder)) {
    protocol::AppendMsgpackMapHeader(1, out);
    protocol::AppendMsgpackString("id", out);
    return protocol::AppendMsgpackUint(blob->blob_id, out);
  }
  if (p == Py_None) return out->push_back(0xc0);
  if (PyBool_Check(p)) return protocol::AppendMsgpackBool(p == Py_True, out);
  if (PyLong_Check(p)) return IntToMsgpack(value, path, out);
  if (PyFloat_Check(p)) {
    return protocol::AppendMsgpackDouble(PyFloat_AS_DOUBLE(p), out);
  }
  if (PyUnicode_Check(p)) {
    Py_ssize_t size = 0;
    const char* utf8 = PyUnicode_AsUTF8AndSize(p, &size);
    if (!utf8) throw py::error_already_set();
    return protocol::AppendMsgpackString(
        std::string_view(utf8, static_cast<size_t>(size)), out);
  }
  if (PyBytes_Check(p)) {
    return protocol::AppendMsgpackBinary(
        reinterpret_cast<const uint8_t*>(PyBytes_AS_STRING(p)),
        static_cast<size_t>(PyBytes_GET_SIZE(p)), out);
  }
  if (PyDict_Check(p)) {
    protocol::AppendMsgpackMapHeader(static_cast<size_t>(PyDict_GET_SIZE(p)),
                                     out);
    PyObject *key, *item;
    Py_ssize_t pos = 0;
    while (PyDict_Next(p, &pos, &key, &item)) {
      if (!PyUnicode_Check(key)) {
        ThrowInvalid("object metadata keys must be str, got " + TypeName(key) +
                     " at " + PathText(path));
      }
      Py_ssize_t size = 0;
      const char* utf8 = PyUnicode_AsUTF8AndSize(key, &size);
      if (!utf8) throw py::error_already_set();
      protocol::AppendMsgpackString(
          std::string_view(utf8, static_cast<size_t>(size)), out);
      PathStep step{path, utf8, 0};
      Encode(item, blob, depth + 1, &step, out);
    }
    return;
  }
  if (PyList_Check(p) || PyTuple_Check(p)) {
    py::sequence seq = py::reinterpret_borrow<py::sequence>(value);
    protocol::AppendMsgpackArrayHeader(seq.size(), out);
    size_t i = 0;
    for (py::handle item : seq) {
      PathStep step{path, nullptr, i++};
      Encode(item, blob, depth + 1, &step, out);
    }
    return;
  }
  if (PyIndex_Check(p)) {  // numpy integers and other int-likes
    py::object as_int = py::reinterpret_steal<py::object>(PyNumber_Index(p));
    if (!as_int) throw py::error_already_set();
    return IntToMsgpack(as_int, path, out);
  }
  ThrowInvalid("cannot store a " + TypeName(value) + " in object metadata at " +
               PathText(path));
}

}  // namespace

void ToMsgpack(py::handle value, const BlobPlaceholder* blob, int depth,
               std::vector<uint8_t>* out) {
  Encode(value, blob, depth, nullptr, out);
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

}  // namespace trellis::python
