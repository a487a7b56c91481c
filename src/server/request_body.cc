#include "server/request_body.h"

#include "common/protocol.h"

namespace trellis::server {

using protocol::GetString;
using protocol::GetUint;

Result<json> EmptyReply(const Status& status) {
  if (!status.ok()) return status;
  return json::object();
}

Result<std::vector<std::string>> GetStrings(const json& body, const char* key) {
  auto it = body.find(key);
  auto invalid = [key] {
    return Status::Invalid(std::string("field '") + key +
                           "' must be an array of strings");
  };
  if (it == body.end() || !it->is_array()) return invalid();
  std::vector<std::string> out;
  out.reserve(it->size());
  for (const json& s : *it) {
    if (!s.is_string()) return invalid();
    out.push_back(s.get<std::string>());
  }
  return out;
}

Result<std::string> GetOptionalName(const json& body, const char* key) {
  if (!body.contains(key)) return std::string();
  TRELLIS_ASSIGN_OR_RAISE(std::string name, GetString(body, key));
  if (name.empty()) return Status::Invalid("a name must not be empty");
  return name;
}

Result<std::chrono::milliseconds> GetMilliseconds(const json& body,
                                                  const char* key) {
  if (!body.contains(key)) return std::chrono::milliseconds(0);
  TRELLIS_ASSIGN_OR_RAISE(uint64_t ms, GetUint(body, key));
  return std::chrono::milliseconds(ms);
}

Result<std::vector<uint64_t>> InlineBlobSizes(const json& body, const char* key,
                                              uint64_t max_size) {
  auto data = body.find(key);
  auto invalid = [key] {
    return Status::Invalid(std::string("field '") + key +
                           "' must be an array of binary values");
  };
  if (data == body.end() || !data->is_array()) return invalid();
  std::vector<uint64_t> sizes;
  sizes.reserve(data->size());
  for (const json& d : *data) {
    if (!d.is_binary()) return invalid();
    if (d.get_binary().size() > max_size) {
      return Status::Invalid(
          "inline blob of " + std::to_string(d.get_binary().size()) +
          " bytes exceeds the inline limit of " + std::to_string(max_size));
    }
    sizes.push_back(d.get_binary().size());
  }
  return sizes;
}

Result<const json*> GetOptionalInlineBlob(const json& body, const char* key,
                                          uint64_t max_size) {
  auto data = body.find(key);
  if (data == body.end()) return nullptr;
  if (!data->is_binary()) {
    return Status::Invalid(std::string("field '") + key +
                           "' must be a binary value");
  }
  if (data->get_binary().size() > max_size) {
    return Status::Invalid(
        "inline blob of " + std::to_string(data->get_binary().size()) +
        " bytes exceeds the inline limit of " + std::to_string(max_size));
  }
  return &*data;
}

Result<ListRequest> ParseList(const json& body) {
  ListRequest list;
  if (body.contains("pattern")) {
    TRELLIS_ASSIGN_OR_RAISE(list.pattern, GetString(body, "pattern"));
  }
  if (body.contains("limit")) {
    TRELLIS_ASSIGN_OR_RAISE(uint64_t limit, GetUint(body, "limit"));
    list.limit = static_cast<size_t>(limit);
  }
  return list;
}

}  // namespace trellis::server
