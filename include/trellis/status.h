// Status and Result<T>: the one error path of trellis.
//
// Every fallible call returns a Status (no value) or a Result<T> (a value or a
// Status). The C++ core throws no exceptions; the Python layer translates a
// Status into an exception in exactly one place (python/src/errors.cc).
#pragma once

#include <cassert>
#include <optional>
#include <ostream>
#include <string>
#include <utility>

namespace trellis {

// Error codes. The numeric values are part of the wire protocol
// (docs/protocol.md): never renumber, only append.
enum class StatusCode : int {
  kOk = 0,
  kObjectNotFound = 1,  // no object, blob or name with that key
  kObjectExists = 2,    // a name or id that must be new is taken
  kNotSealed = 3,       // the object is still being written
  kOutOfMemory = 4,     // the arena cannot hold the request
  kInvalid = 5,         // malformed input or a call that breaks a rule
  kIOError = 6,         // a system call failed
  kDisconnected = 7,    // the peer went away or the connection is closed
  kTimeout = 8,         // a blocking call ran out of time
  kNotImplemented = 9,  // recognised but not supported by this build/backend
};

// Returns the stable name of a code, e.g. "ObjectNotFound".
const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message)
      : code_(code), message_(std::move(message)) {}

  static Status OK() { return Status(); }
  static Status ObjectNotFound(std::string msg) {
    return {StatusCode::kObjectNotFound, std::move(msg)};
  }
  static Status ObjectExists(std::string msg) {
    return {StatusCode::kObjectExists, std::move(msg)};
  }
  static Status NotSealed(std::string msg) {
    return {StatusCode::kNotSealed, std::move(msg)};
  }
  static Status OutOfMemory(std::string msg) {
    return {StatusCode::kOutOfMemory, std::move(msg)};
  }
  static Status Invalid(std::string msg) {
    return {StatusCode::kInvalid, std::move(msg)};
  }
  static Status IOError(std::string msg) {
    return {StatusCode::kIOError, std::move(msg)};
  }
  // An IOError whose message ends with strerror(errnum).
  static Status FromErrno(const std::string& what, int errnum);
  static Status Disconnected(std::string msg) {
    return {StatusCode::kDisconnected, std::move(msg)};
  }
  static Status Timeout(std::string msg) {
    return {StatusCode::kTimeout, std::move(msg)};
  }
  static Status NotImplemented(std::string msg) {
    return {StatusCode::kNotImplemented, std::move(msg)};
  }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  bool IsObjectNotFound() const { return code_ == StatusCode::kObjectNotFound; }
  bool IsObjectExists() const { return code_ == StatusCode::kObjectExists; }
  bool IsNotSealed() const { return code_ == StatusCode::kNotSealed; }
  bool IsOutOfMemory() const { return code_ == StatusCode::kOutOfMemory; }
  bool IsInvalid() const { return code_ == StatusCode::kInvalid; }
  bool IsIOError() const { return code_ == StatusCode::kIOError; }
  bool IsDisconnected() const { return code_ == StatusCode::kDisconnected; }
  bool IsTimeout() const { return code_ == StatusCode::kTimeout; }

  // "OK" or "<CodeName>: <message>".
  std::string ToString() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline std::ostream& operator<<(std::ostream& os, const Status& s) {
  return os << s.ToString();
}

// Holds either a T or a non-OK Status. Accessing the value of an error
// Result is a programming error (asserted).
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {  // NOLINT
    assert(!status_.ok() && "Result built from an OK Status has no value");
  }

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }

  T& value() & {
    assert(ok());
    return *value_;
  }
  const T& value() const& {
    assert(ok());
    return *value_;
  }
  T&& value() && {
    assert(ok());
    return std::move(*value_);
  }
  T ValueOr(T fallback) const& { return ok() ? *value_ : fallback; }

  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace trellis

#define TRELLIS_CONCAT_INNER(a, b) a##b
#define TRELLIS_CONCAT(a, b) TRELLIS_CONCAT_INNER(a, b)

// Returns from the enclosing function if `expr` (a Status) is not OK.
#define TRELLIS_RETURN_NOT_OK(expr) \
  do {                              \
    ::trellis::Status _st = (expr); \
    if (!_st.ok()) return _st;      \
  } while (false)

#define TRELLIS_ASSIGN_OR_RAISE_IMPL(tmp, lhs, rexpr) \
  auto tmp = (rexpr);                                 \
  if (!tmp.ok()) return tmp.status();                 \
  lhs = std::move(tmp).value()

// `TRELLIS_ASSIGN_OR_RAISE(auto x, SomeResult())` declares x from the value, or
// returns the error from the enclosing function.
#define TRELLIS_ASSIGN_OR_RAISE(lhs, rexpr) \
  TRELLIS_ASSIGN_OR_RAISE_IMPL(TRELLIS_CONCAT(_res_, __LINE__), lhs, rexpr)
