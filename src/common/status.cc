#include "trellis/status.h"

#include <cstring>

namespace trellis {

const char* StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return "OK";
#define TRELLIS_STATUS_CODE_CASE(name, number) \
  case StatusCode::k##name:                    \
    return #name;
      TRELLIS_STATUS_CODES(TRELLIS_STATUS_CODE_CASE)
#undef TRELLIS_STATUS_CODE_CASE
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
