#include "common/status_fields.h"

namespace trellis::protocol {

json StatusBody(const StatusFields& fields) {
  json body = json::object();
#define TRELLIS_STATUS_FIELDS_ENCODE(type, name, description) \
  body[#name] = fields.name.value;
  TRELLIS_STORE_STATUS_FIELDS(TRELLIS_STATUS_FIELDS_ENCODE)
#undef TRELLIS_STATUS_FIELDS_ENCODE
  return body;
}

namespace {

void DecodeField(const json& v, uint64_t* out) { AsUint(v, out); }

void DecodeField(const json& v, uint16_t* out) {
  uint64_t value = 0;
  if (AsUint(v, &value) && value <= UINT16_MAX) {
    *out = static_cast<uint16_t>(value);
  }
}

void DecodeField(const json& v, double* out) {
  if (v.is_number()) *out = v.get<double>();
}

void DecodeField(const json& v, bool* out) {
  if (v.is_boolean()) *out = v.get<bool>();
}

void DecodeField(const json& v, std::string* out) {
  if (v.is_string()) *out = v.get<std::string>();
}

}  // namespace

StoreStatus DecodeStatus(const json& body) {
  StoreStatus status;
  if (!body.is_object()) return status;
  status.ForEachField([&](const char* name, const char*, auto& value) {
    auto it = body.find(name);
    if (it != body.end()) DecodeField(*it, &value);
  });
  return status;
}

}  // namespace trellis::protocol
