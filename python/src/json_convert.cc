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

}  // namespace trellis::python
