#include "trellis/status.h"

#include <cstring>

namespace trellis {

const char* StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return "OK";
    case StatusCode::kObjectNotFound:
      return "ObjectNotFound";
    case StatusCode::kObjectExists:
      return "ObjectExists";
    case StatusCode::kNotSealed:
      return "NotSealed";
    case StatusCode::kOutOfMemory:
      return "OutOfMemory";
    case StatusCode::kInvalid:
      return "Invalid";
    case StatusCode::kIOError:
      return "IOError";
    case StatusCode::kDisconnected:
      return "Disconnected";
    case StatusCode::kTimeout:
      return "Timeout";
    case StatusCode::kNotImplemented:
      return "NotImplemented";
  }
  return "Unknown";
}

Status Status::FromErrno(const std::string& what, int errnum) {
  return Status::IOError(what + ": " + std::strerror(errnum));
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  return std::string(StatusCodeName(code_)) + ": " + message_;
}

}  // namespace trellis
