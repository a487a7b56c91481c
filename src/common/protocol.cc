#include "common/protocol.h"

#include <algorithm>
#include <cstring>

// Only msgpack-cxx's parser is used here.
#include "common/json_dom_builder.h"
#include "common/msgpack.h"

namespace trellis::protocol {
namespace {

// Builds the DOM of a body from msgpack-cxx's visitor parse (a SAX-style
// parser: no recursion, strings and binaries read in place). Refuses maps
// and arrays nested deeper than kMaxBodyDepth and map keys that are not
// strings, and remembers what was wrong for the error message. Reports
// errors rather than throwing (DecodeBody catches what msgpack-cxx's parser
// or an allocation may still throw).
//
// msgpack-cxx rather than nlohmann's own MessagePack reader (the DOM's
// library): measured on real bodies (bench/msgpack_bench.cc, results in
// bench/results/msgpack_bench.md) it parses 3x faster, which takes the
// whole decode from 75 to 61 us of CPU on a 46-column DataFrame's GetMeta
// reply, 248 to 224 us on a 200-column CreateObject and 0.25 to 0.16 us on
// {"ids": [id]}. nlohmann's public SAX interface feeding the same
// JsonDomBuilder measured as fast as the old decoder, and no faster.
class DomVisitor : public msgpack::null_visitor {
 public:
  explicit DomVisitor(json* root) : dom_(root, kMaxBodyDepth) {}

  bool visit_nil() { return Value(json(nullptr)); }
  bool visit_boolean(bool v) { return Value(json(v)); }
  bool visit_positive_integer(uint64_t v) { return Value(json(v)); }
  // Also int8..int64 holding a non-negative value (as nlohmann reads them).
  bool visit_negative_integer(int64_t v) { return Value(json(v)); }
  bool visit_float32(float v) { return Value(json(static_cast<double>(v))); }
  bool visit_float64(double v) { return Value(json(v)); }
  bool visit_str(const char* v, uint32_t size) {
    if (in_key_) {
      dom_.key().assign(v, size);
      return true;
    }
    return Value(json(std::string(v, size)));
  }
  bool visit_bin(const char* v, uint32_t size) {
    const auto* b = reinterpret_cast<const uint8_t*>(v);
    return Value(json::binary(std::vector<uint8_t>(b, b + size)));
  }
  // `v` is the ext type byte followed by size - 1 bytes of data; nlohmann
  // reads it as a binary with the type as subtype, and so does this.
  bool visit_ext(const char* v, uint32_t size) {
    const auto* b = reinterpret_cast<const uint8_t*>(v);
    return Value(json::binary(std::vector<uint8_t>(b + 1, b + size), b[0]));
  }
  // Declared sizes come from the peer: they never drive allocation.
  bool start_array(uint32_t) { return Open(json::array()); }
  bool end_array() { return Close(); }
  bool start_map(uint32_t) { return Open(json::object()); }
  bool start_map_key() {
    in_key_ = true;
    return true;
  }
  bool end_map_key() {
    in_key_ = false;
    return true;
  }
  bool end_map() { return Close(); }
  void parse_error(size_t, size_t error_offset) {
    Malformed("byte " + std::to_string(error_offset) +
              " is not a MessagePack type");
  }
  void insufficient_bytes(size_t, size_t) { Malformed("truncated"); }

  // The first error reported (the Invalid message), empty if none was.
  const std::string& error() const { return error_; }
  void Fail(std::string message) {
    if (error_.empty()) error_ = std::move(message);
  }
  void Malformed(const std::string& what) {
    Fail("frame body is not valid MessagePack: " + what);
  }

 private:
  bool Value(json&& v) {
    if (in_key_) return KeyIsNotAString();
    dom_.Value(std::move(v));
    return true;
  }
  bool Open(json&& empty) {
    if (in_key_) return KeyIsNotAString();
    if (!dom_.Open(std::move(empty))) {
      Fail("frame body nests deeper than " + std::to_string(kMaxBodyDepth) +
           " levels of maps and arrays");
      return false;
    }
    return true;
  }
  bool Close() {
    dom_.Close();
    return true;
  }
  bool KeyIsNotAString() {
    Malformed("a map key is not a string");
    return false;
  }

  JsonDomBuilder dom_;
  bool in_key_ = false;
  std::string error_;
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
    case MessageType::kClusterInfo:
      return "ClusterInfo";
    case MessageType::kLocate:
      return "Locate";
    case MessageType::kReply:
      return "Reply";
    case MessageType::kError:
      return "Error";
  }
  return "Unknown(" + std::to_string(type) + ")";
}

bool IsRequestType(uint16_t type) {
  // BlobData is not a request frame: it only travels as bulk frames.
  return type >= static_cast<uint16_t>(MessageType::kHello) &&
         (type <= static_cast<uint16_t>(MessageType::kMemoryTrim) ||
          type == static_cast<uint16_t>(MessageType::kReadBlobs) ||
          type == static_cast<uint16_t>(MessageType::kClusterInfo) ||
          type == static_cast<uint16_t>(MessageType::kLocate));
}

namespace {
// Subtype marking a binary json value as a pre-encoded body (EncodedBody).
constexpr std::uint64_t kEncodedBodySubtype = 0x7472;  // "tr"

bool IsEncodedBody(const json& body) {
  return body.is_binary() && body.get_binary().has_subtype() &&
         body.get_binary().subtype() == kEncodedBodySubtype;
}

// The MessagePack building blocks are msgpack-cxx's packer (but for
// doubles, below), which writes the shortest encodings, as nlohmann's
// to_msgpack and python3-msgpack do (protocol_test and
// python/tests/test_msgpack_differential.py check the bytes). Measured as
// fast as the hand-written encoder it replaced
// (bench/results/msgpack_bench.md).
struct VectorStream {
  std::vector<uint8_t>* out;
  void write(const char* bytes, size_t size) {
    out->insert(out->end(), bytes, bytes + size);
  }
};

template <typename F>
void Pack(std::vector<uint8_t>* out, F&& pack) {
  VectorStream stream{out};
  msgpack::packer<VectorStream> packer(stream);
  pack(packer);
}
}  // namespace

json EncodedBody(std::vector<uint8_t> msgpack) {
  return json::binary(std::move(msgpack), kEncodedBodySubtype);
}

// Sizes above 4 GiB cannot be encoded and do not occur (frames are smaller).
void AppendMsgpackMapHeader(size_t entries, std::vector<uint8_t>* out) {
  Pack(out, [&](auto& p) { p.pack_map(static_cast<uint32_t>(entries)); });
}

void AppendMsgpackBool(bool v, std::vector<uint8_t>* out) {
  Pack(out, [&](auto& p) { v ? p.pack_true() : p.pack_false(); });
}

void AppendMsgpackArrayHeader(size_t size, std::vector<uint8_t>* out) {
  Pack(out, [&](auto& p) { p.pack_array(static_cast<uint32_t>(size)); });
}

void AppendMsgpackString(std::string_view s, std::vector<uint8_t>* out) {
  Pack(out, [&](auto& p) {
    p.pack_str(static_cast<uint32_t>(s.size()));
    p.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
  });
}

void AppendMsgpackUint(uint64_t v, std::vector<uint8_t>* out) {
  Pack(out, [&](auto& p) { p.pack_uint64(v); });
}

void AppendMsgpackInt(int64_t v, std::vector<uint8_t>* out) {
  Pack(out, [&](auto& p) { p.pack_int64(v); });
}

// By hand: msgpack-cxx's pack_double writes a double holding an integer as
// that integer (2.0 as 2, -0.0 as 0), which loses the type and the sign.
void AppendMsgpackDouble(double v, std::vector<uint8_t>* out) {
  uint64_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  out->push_back(0xcb);
  for (int shift = 56; shift >= 0; shift -= 8) {
    out->push_back(static_cast<uint8_t>(bits >> shift));
  }
}

void AppendMsgpackBinary(const uint8_t* data, size_t size,
                         std::vector<uint8_t>* out) {
  Pack(out, [&](auto& p) {
    p.pack_bin(static_cast<uint32_t>(size));
    p.pack_bin_body(reinterpret_cast<const char*>(data),
                    static_cast<uint32_t>(size));
  });
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
  DomVisitor visitor(&body);
  size_t end = 0;
  bool parsed = false;
  try {
    parsed =
        msgpack::parse(reinterpret_cast<const char*>(data), size, end, visitor);
  } catch (const std::exception& e) {  // e.g. an ext32 of 4 GiB, bad_alloc
    visitor.Malformed(e.what());
  }
  if (!parsed) visitor.Malformed("truncated");  // if nothing said otherwise
  if (parsed && end != size) {
    visitor.Malformed(std::to_string(size - end) +
                      " trailing bytes after the value");
  }
  if (!visitor.error().empty()) return Status::Invalid(visitor.error());
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
    bool overwrite, bool persist, const std::string& name,
    const std::vector<uint8_t>* data) {
  return CreateObjectBody(write_tree, overwrite, persist, name, data, {});
}

std::vector<uint8_t> TakeEncodedBody(json&& body) {
  if (!IsEncodedBody(body)) return {};
  return std::move(static_cast<std::vector<uint8_t>&>(body.get_binary()));
}

json CreateObjectBody(
    const std::function<void(std::vector<uint8_t>*)>& write_tree,
    bool overwrite, bool persist, const std::string& name,
    const std::vector<uint8_t>* data, std::vector<uint8_t> scratch,
    const SpareBlobFields& spares) {
  std::vector<uint8_t> body = std::move(scratch);
  body.clear();
  if (data) body.reserve(data->size() + 256);
  AppendMsgpackMapHeader(3 + !name.empty() + (data != nullptr) +
                             (spares.spare > 0) + spares.give_back.valid() +
                             spares.trim.valid() + spares.as.valid(),
                         &body);
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
  if (data) {
    AppendMsgpackString("data", &body);
    AppendMsgpackBinary(data->data(), data->size(), &body);
  }
  if (spares.spare > 0) {
    AppendMsgpackString("spare", &body);
    AppendMsgpackUint(spares.spare, &body);
  }
  if (spares.give_back.valid()) {
    AppendMsgpackString("abort", &body);
    AppendMsgpackArrayHeader(1, &body);
    AppendMsgpackUint(spares.give_back.value(), &body);
  }
  if (spares.trim.valid()) {
    AppendMsgpackString("trim", &body);
    AppendMsgpackMapHeader(2, &body);
    AppendMsgpackString("id", &body);
    AppendMsgpackUint(spares.trim.value(), &body);
    AppendMsgpackString("size", &body);
    AppendMsgpackUint(spares.trim_size, &body);
  }
  if (spares.as.valid()) {
    AppendMsgpackString("id", &body);
    AppendMsgpackUint(spares.as.value(), &body);
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
