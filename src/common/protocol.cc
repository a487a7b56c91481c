#include "common/protocol.h"

#include <algorithm>
#include <cstring>

namespace trellis::protocol {
namespace {

// A SAX handler that builds the DOM like nlohmann's own, but refuses bodies
// nested deeper than kMaxBodyDepth and never throws.
class BoundedDomBuilder {
 public:
  explicit BoundedDomBuilder(json& root) : dom_(root, false) {}

  bool null() { return dom_.null(); }
  bool boolean(bool v) { return dom_.boolean(v); }
  bool number_integer(json::number_integer_t v) {
    return dom_.number_integer(v);
  }
  bool number_unsigned(json::number_unsigned_t v) {
    return dom_.number_unsigned(v);
  }
  bool number_float(json::number_float_t v, const json::string_t& s) {
    return dom_.number_float(v, s);
  }
  bool string(json::string_t& v) { return dom_.string(v); }
  bool binary(json::binary_t& v) { return dom_.binary(v); }
  bool start_object(size_t len) {
    if (++depth_ > kMaxBodyDepth) return false;
    return dom_.start_object(kUnknownSize(len));
  }
  bool key(json::string_t& v) { return dom_.key(v); }
  bool end_object() {
    --depth_;
    return dom_.end_object();
  }
  bool start_array(size_t len) {
    if (++depth_ > kMaxBodyDepth) return false;
    return dom_.start_array(kUnknownSize(len));
  }
  bool end_array() {
    --depth_;
    return dom_.end_array();
  }
  bool parse_error(size_t pos, const std::string& token,
                   const nlohmann::detail::exception& ex) {
    failed_ = true;
    return dom_.parse_error(pos, token, ex);
  }
  bool failed() const { return failed_ || dom_.is_errored(); }

 private:
  // Declared sizes come from the peer; never let them drive allocation.
  static size_t kUnknownSize(size_t) { return static_cast<size_t>(-1); }

  nlohmann::detail::json_sax_dom_parser<json> dom_;
  size_t depth_ = 0;
  bool failed_ = false;
};

void PutLe32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void PutLe16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
uint32_t GetLe32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 |
         uint32_t{p[3]} << 24;
}
uint16_t GetLe16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | p[1] << 8);
}

}  // namespace

std::string MessageTypeName(uint16_t type) {
  switch (static_cast<MessageType>(type)) {
    case MessageType::kHello:
      return "Hello";
    case MessageType::kCreateBlobs:
      return "CreateBlobs";
    case MessageType::kPutBlobs:
      return "PutBlobs";
    case MessageType::kSeal:
      return "Seal";
    case MessageType::kAbort:
      return "Abort";
    case MessageType::kCreateObject:
      return "CreateObject";
    case MessageType::kGetMeta:
      return "GetMeta";
    case MessageType::kGetBlobs:
      return "GetBlobs";
    case MessageType::kRelease:
      return "Release";
    case MessageType::kPutName:
      return "PutName";
    case MessageType::kGetName:
      return "GetName";
    case MessageType::kDropName:
      return "DropName";
    case MessageType::kListNames:
      return "ListNames";
    case MessageType::kDelete:
      return "Delete";
    case MessageType::kPersist:
      return "Persist";
    case MessageType::kListObjects:
      return "ListObjects";
    case MessageType::kStatus:
      return "Status";
    case MessageType::kPin:
      return "Pin";
    case MessageType::kUnpin:
      return "Unpin";
    case MessageType::kEvict:
      return "Evict";
    case MessageType::kMemoryTrim:
      return "MemoryTrim";
    case MessageType::kBlobData:
      return "BlobData";
    case MessageType::kReadBlobs:
      return "ReadBlobs";
    case MessageType::kReply:
      return "Reply";
    case MessageType::kError:
      return "Error";
  }
  return "Unknown(" + std::to_string(type) + ")";
}

bool IsRequestType(uint16_t type) {
  // BlobData is not a request frame: it only travels as bulk frames.
  return (type >= static_cast<uint16_t>(MessageType::kHello) &&
          type <= static_cast<uint16_t>(MessageType::kMemoryTrim)) ||
         type == static_cast<uint16_t>(MessageType::kReadBlobs);
}

namespace {
// Subtype marking a binary json value as a pre-encoded body (EncodedBody).
constexpr std::uint64_t kEncodedBodySubtype = 0x7472;  // "tr"

bool IsEncodedBody(const json& body) {
  return body.is_binary() && body.get_binary().has_subtype() &&
         body.get_binary().subtype() == kEncodedBodySubtype;
}

void PutBe(uint64_t v, int bytes, std::vector<uint8_t>* out) {
  for (int i = bytes - 1; i >= 0; --i) {
    out->push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
}

void AppendHeader(size_t n, uint8_t fix, uint8_t fix_limit, uint8_t tag16,
                  std::vector<uint8_t>* out) {
  if (n < fix_limit) {
    out->push_back(static_cast<uint8_t>(fix | n));
  } else if (n <= 0xffff) {
    out->push_back(tag16);
    PutBe(n, 2, out);
  } else {
    out->push_back(static_cast<uint8_t>(tag16 + 1));  // 32-bit length
    PutBe(n, 4, out);
  }
}
}  // namespace

json EncodedBody(std::vector<uint8_t> msgpack) {
  return json::binary(std::move(msgpack), kEncodedBodySubtype);
}

void AppendMsgpackMapHeader(size_t entries, std::vector<uint8_t>* out) {
  AppendHeader(entries, 0x80, 16, 0xde, out);
}

void AppendMsgpackBool(bool v, std::vector<uint8_t>* out) {
  out->push_back(v ? 0xc3 : 0xc2);
}

void AppendMsgpackArrayHeader(size_t size, std::vector<uint8_t>* out) {
  AppendHeader(size, 0x90, 16, 0xdc, out);
}

void AppendMsgpackString(std::string_view s, std::vector<uint8_t>* out) {
  if (s.size() < 32) {
    out->push_back(static_cast<uint8_t>(0xa0 | s.size()));
  } else if (s.size() <= 0xff) {
    out->push_back(0xd9);
    PutBe(s.size(), 1, out);
  } else if (s.size() <= 0xffff) {
    out->push_back(0xda);
    PutBe(s.size(), 2, out);
  } else {
    out->push_back(0xdb);
    PutBe(s.size(), 4, out);
  }
  out->insert(out->end(), s.begin(), s.end());
}

void AppendMsgpackUint(uint64_t v, std::vector<uint8_t>* out) {
  if (v < 0x80) {
    out->push_back(static_cast<uint8_t>(v));
  } else if (v <= 0xff) {
    out->push_back(0xcc);
    PutBe(v, 1, out);
  } else if (v <= 0xffff) {
    out->push_back(0xcd);
    PutBe(v, 2, out);
  } else if (v <= 0xffffffff) {
    out->push_back(0xce);
    PutBe(v, 4, out);
  } else {
    out->push_back(0xcf);
    PutBe(v, 8, out);
  }
}

void AppendMsgpackInt(int64_t v, std::vector<uint8_t>* out) {
  if (v >= 0) return AppendMsgpackUint(static_cast<uint64_t>(v), out);
  if (v >= -32) {
    out->push_back(static_cast<uint8_t>(v));  // negative fixint
  } else if (v >= INT8_MIN) {
    out->push_back(0xd0);
    PutBe(static_cast<uint64_t>(v), 1, out);
  } else if (v >= INT16_MIN) {
    out->push_back(0xd1);
    PutBe(static_cast<uint64_t>(v), 2, out);
  } else if (v >= INT32_MIN) {
    out->push_back(0xd2);
    PutBe(static_cast<uint64_t>(v), 4, out);
  } else {
    out->push_back(0xd3);
    PutBe(static_cast<uint64_t>(v), 8, out);
  }
}

void AppendMsgpackDouble(double v, std::vector<uint8_t>* out) {
  uint64_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  out->push_back(0xcb);
  PutBe(bits, 8, out);
}

void AppendMsgpackBinary(const uint8_t* data, size_t size,
                         std::vector<uint8_t>* out) {
  if (size <= 0xff) {
    out->push_back(0xc4);
    PutBe(size, 1, out);
  } else if (size <= 0xffff) {
    out->push_back(0xc5);
    PutBe(size, 2, out);
  } else {
    out->push_back(0xc6);
    PutBe(size, 4, out);
  }
  out->insert(out->end(), data, data + size);
}

void AppendFrame(MessageType type, const json& body,
                 std::vector<uint8_t>* out) {
  size_t start = out->size();
  out->resize(start + kHeaderSize);
  if (IsEncodedBody(body)) {
    const auto& bytes = body.get_binary();
    out->insert(out->end(), bytes.begin(), bytes.end());
  } else {
    json::to_msgpack(body, *out);
  }
  uint32_t length = static_cast<uint32_t>(out->size() - start - kHeaderSize);
  PutLe32(out->data() + start, length);
  PutLe16(out->data() + start + 4, static_cast<uint16_t>(type));
  PutLe16(out->data() + start + 6, 0);
}

std::vector<uint8_t> EncodeFrame(MessageType type, const json& body) {
  std::vector<uint8_t> out;
  AppendFrame(type, body, &out);
  return out;
}

json ErrorBody(const Status& status) {
  return json{{"code", static_cast<int>(status.code())},
              {"message", status.message()}};
}

Status StatusFromErrorBody(const json& body) {
  auto code = GetInt(body, "code");
  auto message = GetString(body, "message");
  if (!code.ok() || !message.ok() || *code <= 0 ||
      *code > static_cast<int>(StatusCode::kNotImplemented)) {
    return Status::Invalid("malformed error reply from peer");
  }
  return Status(static_cast<StatusCode>(*code), *message);
}

void FrameDecoder::Feed(const uint8_t* data, size_t size) {
  // Compact before growing, so a long-lived connection's buffer stays small.
  if (read_pos_ > 0 && read_pos_ == buffer_.size()) {
    buffer_.clear();
    read_pos_ = 0;
  } else if (read_pos_ > (1u << 20)) {
    buffer_.erase(buffer_.begin(), buffer_.begin() + read_pos_);
    read_pos_ = 0;
  }
  buffer_.insert(buffer_.end(), data, data + size);
}

Result<std::optional<Frame>> FrameDecoder::Next() {
  TRELLIS_ASSIGN_OR_RAISE(std::optional<RawFrame> raw, NextRaw());
  if (!raw) return std::optional<Frame>();
  auto body = DecodeBody(raw->body, raw->size);
  if (!body.ok()) {
    read_pos_ -= kHeaderSize + raw->size;  // the stream stays failed
    return body.status();
  }
  return std::optional<Frame>(Frame{raw->type, std::move(body).value()});
}

Result<std::optional<FrameDecoder::RawFrame>> FrameDecoder::NextRaw() {
  size_t available = buffer_.size() - read_pos_;
  if (available < kHeaderSize) return std::optional<RawFrame>();
  const uint8_t* header = buffer_.data() + read_pos_;
  uint32_t length = GetLe32(header);
  uint16_t type = GetLe16(header + 4);
  uint16_t flags = GetLe16(header + 6);
  if (length > max_frame_) {
    return Status::Invalid("frame of " + std::to_string(length) +
                           " bytes exceeds the limit of " +
                           std::to_string(max_frame_) + " bytes");
  }
  if (flags != 0) {
    return Status::Invalid("frame flags must be 0, got " +
                           std::to_string(flags));
  }
  if (available < kHeaderSize + length) return std::optional<RawFrame>();
  read_pos_ += kHeaderSize + length;
  return std::optional<RawFrame>(RawFrame{type, header + kHeaderSize, length});
}

Result<json> DecodeBody(const uint8_t* data, size_t size) {
  json body;
  bool parsed = false;
  bool failed = true;
  // The library reports errors through the handler; the catch only keeps any
  // exception it might still raise from crossing into exception-free code.
  try {
    BoundedDomBuilder builder(body);
    parsed = json::sax_parse(data, data + size, &builder,
                             json::input_format_t::msgpack, true);
    failed = builder.failed();
  } catch (const std::exception&) {
    failed = true;
  }
  if (!parsed || failed) {
    return Status::Invalid(
        "frame body is not valid MessagePack (or nests "
        "deeper than " +
        std::to_string(kMaxBodyDepth) + " levels)");
  }
  if (!body.is_object()) {
    return Status::Invalid("frame body must be a MessagePack map");
  }
  return body;
}

namespace {
Result<const json*> Field(const json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end()) {
    return Status::Invalid(std::string("missing field '") + key + "'");
  }
  return &*it;
}
Status WrongType(const char* key, const char* want) {
  return Status::Invalid(std::string("field '") + key + "' must be " + want);
}
}  // namespace

bool AsUint(const json& v, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer() && v.get<int64_t>() >= 0) {
    *out = static_cast<uint64_t>(v.get<int64_t>());
    return true;
  }
  return false;
}

Result<uint64_t> GetUint(const json& body, const char* key) {
  TRELLIS_ASSIGN_OR_RAISE(const json* v, Field(body, key));
  uint64_t out;
  if (!AsUint(*v, &out)) return WrongType(key, "an unsigned integer");
  return out;
}

Result<int64_t> GetInt(const json& body, const char* key) {
  TRELLIS_ASSIGN_OR_RAISE(const json* v, Field(body, key));
  if (v->is_number_unsigned()) {
    uint64_t u = v->get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) return WrongType(key, "an int64");
    return static_cast<int64_t>(u);
  }
  if (!v->is_number_integer()) return WrongType(key, "an integer");
  return v->get<int64_t>();
}

Result<std::string> GetString(const json& body, const char* key) {
  TRELLIS_ASSIGN_OR_RAISE(const json* v, Field(body, key));
  if (!v->is_string()) return WrongType(key, "a string");
  return v->get<std::string>();
}

Result<bool> GetBool(const json& body, const char* key, bool fallback) {
  auto it = body.find(key);
  if (it == body.end()) return fallback;
  if (!it->is_boolean()) return WrongType(key, "a boolean");
  return it->get<bool>();
}

Result<ObjectID> GetId(const json& body, const char* key) {
  TRELLIS_ASSIGN_OR_RAISE(uint64_t v, GetUint(body, key));
  return ObjectID(v);
}

Result<std::vector<uint64_t>> GetUints(const json& body, const char* key) {
  TRELLIS_ASSIGN_OR_RAISE(const json* v, Field(body, key));
  if (!v->is_array()) return WrongType(key, "an array of unsigned integers");
  std::vector<uint64_t> out;
  out.reserve(v->size());
  for (const json& e : *v) {
    uint64_t u;
    if (!AsUint(e, &u)) return WrongType(key, "an array of unsigned integers");
    out.push_back(u);
  }
  return out;
}

Result<std::vector<ObjectID>> GetIds(const json& body, const char* key) {
  TRELLIS_ASSIGN_OR_RAISE(std::vector<uint64_t> raw, GetUints(body, key));
  std::vector<ObjectID> ids;
  ids.reserve(raw.size());
  for (uint64_t v : raw) ids.emplace_back(v);
  return ids;
}

Result<const json*> GetMap(const json& body, const char* key) {
  TRELLIS_ASSIGN_OR_RAISE(const json* v, Field(body, key));
  if (!v->is_object()) return WrongType(key, "a map");
  return v;
}

json IdsToJson(const std::vector<ObjectID>& ids) {
  json out = json::array();
  for (ObjectID id : ids) out.push_back(id.value());
  return out;
}

size_t NestingDepth(const json& v) {
  if (!v.is_object() && !v.is_array()) return 0;
  size_t deepest = 0;
  for (const json& item : v) deepest = std::max(deepest, NestingDepth(item));
  return deepest + 1;
}

json IdsBody(const std::vector<ObjectID>& ids) {
  std::vector<uint8_t> body;
  body.reserve(16 + 9 * ids.size());
  AppendMsgpackMapHeader(1, &body);
  AppendMsgpackString("ids", &body);
  AppendMsgpackArrayHeader(ids.size(), &body);
  for (ObjectID id : ids) AppendMsgpackUint(id.value(), &body);
  return EncodedBody(std::move(body));
}

json NamesBody(const std::vector<std::string>& names) {
  std::vector<uint8_t> body;
  AppendMsgpackMapHeader(1, &body);
  AppendMsgpackString("names", &body);
  AppendMsgpackArrayHeader(names.size(), &body);
  for (const std::string& name : names) AppendMsgpackString(name, &body);
  return EncodedBody(std::move(body));
}

json CreateObjectBody(
    const std::function<void(std::vector<uint8_t>*)>& write_tree,
    bool overwrite, bool persist, const std::string& name) {
  std::vector<uint8_t> body;
  AppendMsgpackMapHeader(name.empty() ? 3 : 4, &body);
  AppendMsgpackString("tree", &body);
  write_tree(&body);
  AppendMsgpackString("overwrite", &body);
  AppendMsgpackBool(overwrite, &body);
  AppendMsgpackString("persist", &body);
  AppendMsgpackBool(persist, &body);
  if (!name.empty()) {
    AppendMsgpackString("name", &body);
    AppendMsgpackString(name, &body);
  }
  return EncodedBody(std::move(body));
}

// ---------------------------------------------------------------- bulk frames

namespace {
void PutLe64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint64_t GetLe64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = v << 8 | p[i];
  return v;
}
}  // namespace

std::array<uint8_t, kBulkHeaderSize> EncodeBulkHeader(MessageType type,
                                                      ObjectID blob,
                                                      uint64_t offset,
                                                      uint64_t size) {
  std::array<uint8_t, kBulkHeaderSize> out;
  PutLe32(out.data(), static_cast<uint32_t>(kBulkPreambleSize + size));
  PutLe16(out.data() + 4, static_cast<uint16_t>(type));
  PutLe16(out.data() + 6, kFlagBulk);
  PutLe64(out.data() + kHeaderSize, blob.value());
  PutLe64(out.data() + kHeaderSize + 8, offset);
  return out;
}

std::vector<uint64_t> ConcatenatedPositions(const std::vector<uint64_t>& sizes,
                                            uint64_t* total) {
  std::vector<uint64_t> positions;
  positions.reserve(sizes.size());
  uint64_t end = 0;
  for (uint64_t size : sizes) {
    positions.push_back(end);
    end = (end + size + kBlobAlignment - 1) / kBlobAlignment * kBlobAlignment;
  }
  if (total) *total = end;
  return positions;
}

bool FrameDecoder::NextIsBulk() const {
  return buffered() >= kHeaderSize &&
         (GetLe16(buffer_.data() + read_pos_ + 6) & kFlagBulk) != 0;
}

Result<std::optional<BulkHeader>> FrameDecoder::NextBulk() {
  if (buffered() < kHeaderSize) return std::optional<BulkHeader>();
  const uint8_t* header = buffer_.data() + read_pos_;
  uint32_t length = GetLe32(header);
  uint16_t flags = GetLe16(header + 6);
  if (flags != kFlagBulk) {
    return Status::Invalid("bulk frame flags must be " +
                           std::to_string(kFlagBulk) + ", got " +
                           std::to_string(flags));
  }
  if (length < kBulkPreambleSize) {
    return Status::Invalid("bulk frame of " + std::to_string(length) +
                           " bytes is shorter than its " +
                           std::to_string(kBulkPreambleSize) +
                           "-byte preamble");
  }
  if (length - kBulkPreambleSize > kMaxBulkChunk) {
    return Status::Invalid("bulk frame payload of " +
                           std::to_string(length - kBulkPreambleSize) +
                           " bytes exceeds the chunk limit of " +
                           std::to_string(kMaxBulkChunk) + " bytes");
  }
  if (buffered() < kBulkHeaderSize) return std::optional<BulkHeader>();
  BulkHeader bulk;
  bulk.type = GetLe16(header + 4);
  bulk.blob = ObjectID(GetLe64(header + kHeaderSize));
  bulk.offset = GetLe64(header + kHeaderSize + 8);
  bulk.size = length - kBulkPreambleSize;
  read_pos_ += kBulkHeaderSize;
  return std::optional<BulkHeader>(bulk);
}

size_t FrameDecoder::Take(uint8_t* out, size_t max) {
  size_t n = std::min(max, buffered());
  if (n > 0) std::memcpy(out, buffer_.data() + read_pos_, n);
  read_pos_ += n;
  return n;
}

Result<json> BodyDom(const json& body) {
  if (!IsEncodedBody(body)) return body;
  const auto& bytes = body.get_binary();
  return DecodeBody(bytes.data(), bytes.size());
}

}  // namespace trellis::protocol
