// Parsing helpers for the bodies of requests (docs/protocol.md), beside the
// typed field accessors of common/protocol.h, so that the Store's handlers
// parse with TRELLIS_ASSIGN_OR_RAISE and hold no parsing code of their own.
// Every error is Invalid and names the field.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "trellis/status.h"

namespace trellis::server {

using nlohmann::json;

// {} for OK, else the error.
Result<json> EmptyReply(const Status& status);

// An array of strings.
Result<std::vector<std::string>> GetStrings(const json& body, const char* key);
// An optional name: "" if absent; Invalid if present but empty.
Result<std::string> GetOptionalName(const json& body, const char* key);
// Optional milliseconds, 0 if absent.
Result<std::chrono::milliseconds> GetMilliseconds(const json& body,
                                                  const char* key);
// The sizes of the binary values in the array `key` (PutBlobs' "data"),
// each at most `max_size` bytes.
Result<std::vector<uint64_t>> InlineBlobSizes(const json& body, const char* key,
                                              uint64_t max_size);
// The optional binary value `key` (CreateObject's "data"), at most
// `max_size` bytes; nullptr when absent.
Result<const json*> GetOptionalInlineBlob(const json& body, const char* key,
                                          uint64_t max_size);

// ListNames and ListObjects: {pattern?: str = "*", limit?: uint = 1000000}.
struct ListRequest {
  static constexpr size_t kDefaultLimit = 1000000;
  std::string pattern = "*";
  size_t limit = kDefaultLimit;
};
Result<ListRequest> ParseList(const json& body);

}  // namespace trellis::server
