// String columns in Arrow's layout (docs/format.md, trellis::StringColumn):
// an int64 offsets buffer of n+1 entries, the UTF-8 bytes of all values
// back to back, and an optional validity bitmap (bit i of byte i/8, least
// significant first; 1 = present). Encoding and decoding loop in C++ because
// a Python loop over millions of strings would dominate a put or get.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace trellis::python {

// How missing values of a column are written in Python.
enum class MissingKind { kNone, kPyNone, kNaN, kNA };

// The scanned contents of a 1-d object array of str, ready to be written.
// Keeps the array (and so the UTF-8 bytes it points into) alive.
class StringColumnEncoder {
 public:
  // Scans `values`. Missing values may be None, float NaN or `na` (pandas'
  // NA), but only one kind per column (so the column reads back exactly).
  // Returns nullopt if an element is anything else or cannot be encoded as
  // UTF-8 (lone surrogates). GIL held.
  static std::optional<StringColumnEncoder> Scan(pybind11::array values,
                                                 pybind11::handle na);

  int64_t length() const { return static_cast<int64_t>(items_.size()); }
  uint64_t data_bytes() const { return data_bytes_; }
  int64_t null_count() const { return null_count_; }
  // "" when nothing is missing, else "None", "nan" or "NA".
  std::string missing() const;
  uint64_t offsets_bytes() const { return 8 * (items_.size() + 1); }
  uint64_t validity_bytes() const { return (items_.size() + 7) / 8; }

  // Writes offsets (8*(n+1) bytes), data (data_bytes) and, when null_count
  // > 0, validity (validity_bytes). Needs no GIL.
  void Write(uint8_t* offsets, uint8_t* data, uint8_t* validity) const;

 private:
  pybind11::array keep_;
  std::vector<std::pair<const char*, int64_t>> items_;  // data null: missing
  uint64_t data_bytes_ = 0;
  int64_t null_count_ = 0;
  MissingKind missing_ = MissingKind::kNone;
};

// Builds a 1-d object array of `count` str from Arrow-layout buffers;
// missing entries (validity bit 0) become `missing_value`. Raises
// InvalidArgument if offsets are not monotonic or point outside `data`, or
// a value is not valid UTF-8. GIL held.
pybind11::array DecodeStrings(const int64_t* offsets, int64_t count,
                              const uint8_t* data, uint64_t data_size,
                              const uint8_t* validity,
                              pybind11::handle missing_value);

}  // namespace trellis::python
