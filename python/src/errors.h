// The one place where trellis::Status becomes a Python exception.
//
// Every exception class of the Python package is created here, at import of
// trellis._core, and each subclasses both trellis.TrellisError and the
// matching builtin, so callers may catch either:
//
//   ObjectNotFound(KeyError)          StatusCode::kObjectNotFound
//   ObjectExists(ValueError)          StatusCode::kObjectExists
//   NotSealed(RuntimeError)           StatusCode::kNotSealed
//   OutOfMemory(MemoryError)          StatusCode::kOutOfMemory
//   InvalidArgument(ValueError)       StatusCode::kInvalid
//   TrellisIOError(OSError)           StatusCode::kIOError
//   DaemonNotReachable(ConnectionError) StatusCode::kDisconnected
//   Timeout(TimeoutError)             StatusCode::kTimeout
//   Unsupported(NotImplementedError)  StatusCode::kNotImplemented
//   UnsupportedType(TypeError)        raised by the Python converters only
#pragma once

#include <pybind11/pybind11.h>

#include <string>
#include <utility>

#include "trellis/status.h"

namespace trellis::python {

// Creates the exception classes and adds them to `m`. Call once.
void RegisterErrors(pybind11::module_& m);

// Raises (throws pybind11::error_already_set) the exception matching a
// non-OK status, with the status message. Does nothing for OK. GIL held.
void ThrowIfError(const Status& status);

// Raises InvalidArgument / UnsupportedType with `message`. GIL held.
[[noreturn]] void ThrowInvalid(const std::string& message);
[[noreturn]] void ThrowUnsupportedType(const std::string& message);

// The value of `result`, or raises its error. GIL held.
template <typename T>
T Unwrap(Result<T> result) {
  ThrowIfError(result.status());
  return std::move(result).value();
}

}  // namespace trellis::python
