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

// The error codes, X(Name, number): StatusCode::kName, Status::Name(msg),
// status.IsName() and StatusCodeName (which returns "Name") are made from
// this list. The numbers are part of the wire protocol (docs/protocol.md):
// never renumber, only append.
//   ObjectNotFound  no object, blob or name with that key
//   ObjectExists    a name or id that must be new is taken
//   NotSealed       the object is still being written
//   OutOfMemory     the arena cannot hold the request
//   Invalid         malformed input or a call that breaks a rule
//   IOError         a system call failed
//   Disconnected    the peer went away or the connection is closed
//   Timeout         a blocking call ran out of time
//   NotImplemented  recognised but not supported by this build/backend
#define TRELLIS_STATUS_CODES(X) \
  X(ObjectNotFound, 1)          \
  X(ObjectExists, 2)            \
  X(NotSealed, 3)               \
  X(OutOfMemory, 4)             \
  X(Invalid, 5)                 \
  X(IOError, 6)                 \
  X(Disconnected, 7)            \
  X(Timeout, 8)                 \
  X(NotImplemented, 9)

enum class StatusCode : int {
  kOk = 0,
#define TRELLIS_STATUS_CODE_ENUMERATOR(name, number) k##name = number,
  TRELLIS_STATUS_CODES(TRELLIS_STATUS_CODE_ENUMERATOR)
#undef TRELLIS_STATUS_CODE_ENUMERATOR
};

// Returns the stable name of a code, e.g. "ObjectNotFound".
const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message)
      : code_(code), message_(std::move(message)) {}

  static Status OK() { return Status(); }
  // Status::ObjectNotFound(msg) ... and IsObjectNotFound() ..., one of each
  // per code.
#define TRELLIS_STATUS_CODE_METHODS(name, number) \
  static Status name(std::string msg) {           \
    return {StatusCode::k##name, std::move(msg)}; \
  }                                               \
  bool Is##name() const { return code_ == StatusCode::k##name; }
  TRELLIS_STATUS_CODES(TRELLIS_STATUS_CODE_METHODS)
#undef TRELLIS_STATUS_CODE_METHODS
  // An IOError whose message ends with strerror(errnum).
  static Status FromErrno(const std::string& what, int errnum);

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

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
