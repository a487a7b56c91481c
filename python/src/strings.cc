#include "strings.h"

#include <cmath>
#include <cstring>

#include "errors.h"

namespace py = pybind11;

namespace trellis::python {

std::optional<StringColumnEncoder> StringColumnEncoder::Scan(py::array values,
                                                             py::handle na) {
  if (values.ndim() != 1 || values.dtype().kind() != 'O') {
    ThrowInvalid("string columns must be 1-d object arrays");
  }
  StringColumnEncoder enc;
  enc.keep_ = values;
  const int64_t n = values.shape(0);
  const py::ssize_t stride = values.strides(0);
  const auto* base = static_cast<const uint8_t*>(values.data());
  enc.items_.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    PyObject* item = *reinterpret_cast<PyObject* const*>(base + i * stride);
    if (item && PyUnicode_Check(item)) {
      Py_ssize_t size = 0;
      // UTF-8 of ASCII strings is their storage; others cache it in the str
      // object, which the kept array keeps alive until Write is done.
      const char* utf8 = PyUnicode_AsUTF8AndSize(item, &size);
      if (!utf8) {
        PyErr_Clear();  // lone surrogates: not representable
        return std::nullopt;
      }
      enc.items_.emplace_back(utf8, size);
      enc.data_bytes_ += static_cast<uint64_t>(size);
      continue;
    }
    MissingKind kind;
    if (item == nullptr || item == Py_None) {
      kind = MissingKind::kPyNone;
    } else if (PyFloat_Check(item) && std::isnan(PyFloat_AS_DOUBLE(item))) {
      kind = MissingKind::kNaN;
    } else if (item == na.ptr()) {
      kind = MissingKind::kNA;
    } else {
      return std::nullopt;  // not a str column
    }
    if (enc.missing_ != MissingKind::kNone && enc.missing_ != kind) {
      return std::nullopt;  // mixed missing markers would not read back
    }
    enc.missing_ = kind;
    enc.items_.emplace_back(nullptr, 0);
    ++enc.null_count_;
  }
  return enc;
}

std::string StringColumnEncoder::missing() const {
  switch (missing_) {
    case MissingKind::kNone:
      return "";
    case MissingKind::kPyNone:
      return "None";
    case MissingKind::kNaN:
      return "nan";
    case MissingKind::kNA:
      return "NA";
  }
  return "";
}

void StringColumnEncoder::Write(uint8_t* offsets, uint8_t* data,
                                uint8_t* validity) const {
  int64_t pos = 0;
  std::memcpy(offsets, &pos, 8);
  if (null_count_ > 0) std::memset(validity, 0, validity_bytes());
  for (size_t i = 0; i < items_.size(); ++i) {
    const auto& [ptr, size] = items_[i];
    if (ptr) {
      std::memcpy(data + pos, ptr, static_cast<size_t>(size));
      pos += size;
      if (null_count_ > 0) validity[i / 8] |= uint8_t(1u << (i % 8));
    }
    std::memcpy(offsets + 8 * (i + 1), &pos, 8);
  }
}

py::array DecodeStrings(const int64_t* offsets, int64_t count,
                        const uint8_t* data, uint64_t data_size,
                        const uint8_t* validity, py::handle missing_value) {
  if (count < 0) ThrowInvalid("string column has a negative length");
  if (offsets[0] < 0 ||
      (count > 0 && static_cast<uint64_t>(offsets[count]) > data_size)) {
    ThrowInvalid("string column offsets point outside its data buffer");
  }
  py::array out(py::dtype("object"), std::vector<py::ssize_t>{count});
  auto** slots = static_cast<PyObject**>(out.mutable_data());
  for (int64_t i = 0; i < count; ++i) {
    PyObject* item;
    if (validity && !((validity[i / 8] >> (i % 8)) & 1)) {
      item = missing_value.inc_ref().ptr();
    } else {
      int64_t begin = offsets[i], end = offsets[i + 1];
      if (end < begin || end > offsets[count]) {
        ThrowInvalid("string column offsets are not monotonic");
      }
      item = PyUnicode_DecodeUTF8(reinterpret_cast<const char*>(data + begin),
                                  end - begin, "strict");
      if (!item) throw py::error_already_set();
    }
    PyObject* old = slots[i];
    slots[i] = item;
    Py_XDECREF(old);
  }
  return out;
}

}  // namespace trellis::python
