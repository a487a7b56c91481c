// The trellis wire protocol: framing, message types and body accessors.
// docs/protocol.md is the specification; keep the two in step.
//
// A frame is an 8-byte little-endian header {u32 body_length, u16 type,
// u16 flags} followed by body_length bytes of MessagePack holding one map.
// MessagePack is used instead of a hand-rolled encoding so that the body
// format is a published spec with independent implementations. What reads
// and writes it (docs/protocol.md, "Bodies"):
//  * DecodeBody (the daemon's requests, the C++ client's replies) parses
//    with msgpack-cxx's visitor parse (Debian's libmsgpack-cxx-dev) into an
//    nlohmann::json DOM, the type that holds metadata trees; only building
//    the DOM and the depth limit are ours. AppendFrame writes a DOM with
//    nlohmann's to_msgpack.
//  * The AppendMsgpack* building blocks, from which the daemon writes its
//    GetMeta trees and the clients their requests (the Python extension's
//    tree writer too), are msgpack-cxx's packer; doubles are written by hand
//    (the packer turns integral doubles into integers).
//  * The Python extension reads replies with its own decoder
//    (python/src/tree_decode.cc): it builds Python objects straight from the
//    bytes and reads DataFrame columns as blocks, which no library does, and
//    it is faster than msgpack-cxx's visitor building the same objects
//    (measured: bench/results/msgpack_bench.md).
// The decoders are fuzzed (src/common/protocol_fuzz.cc,
// python/src/tree_decode_fuzz.cc) and checked against python3-msgpack and
// nlohmann's reader (python/tests/test_msgpack_differential.py,
// protocol_test.cc).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "trellis/object_id.h"
#include "trellis/status.h"

namespace trellis::protocol {

using nlohmann::json;

inline constexpr uint32_t kProtocolVersion = 1;
inline constexpr size_t kHeaderSize = 8;
// Default largest body a peer accepts (trellisd --max-frame changes it).
inline constexpr uint32_t kDefaultMaxFrame = 64u << 20;
// Deepest nesting of maps and arrays a body may have, the body's own map
// counting as 1 (docs/protocol.md, "Limits"). Metadata trees are a few
// levels deep; the limit keeps a hostile body from recursing the decoder
// off the stack.
inline constexpr size_t kMaxBodyDepth = 64;

// Message types. Values are wire constants: append only.
enum class MessageType : uint16_t {
  kHello = 1,
  kCreateBlobs = 2,
  kPutBlobs = 3,
  kSeal = 4,
  kAbort = 5,
  kCreateObject = 6,
  kGetMeta = 7,
  kGetBlobs = 8,
  kRelease = 9,  // the only request without a reply
  kPutName = 10,
  kGetName = 11,
  kDropName = 12,
  kListNames = 13,
  kDelete = 14,
  kPersist = 15,
  kListObjects = 16,
  kStatus = 17,
  kPin = 18,
  kUnpin = 19,
  kEvict = 20,
  kMemoryTrim = 21,
  kBlobData = 22,   // bulk frames only: a chunk of one blob's bytes
  kReadBlobs = 23,  // reply, then the blobs' bytes as BlobData bulk frames
  kClusterInfo = 24,
  kLocate = 25,  // where objects live and how big they are; holds nothing
  kReply = 256,  // success; body is the request's result map
  kError = 257,  // failure; body {code, message}
};

// Name of a type for messages, e.g. "GetMeta"; "Unknown(<n>)" otherwise.
std::string MessageTypeName(uint16_t type);
bool IsRequestType(uint16_t type);

struct Frame {
  uint16_t type = 0;
  json body;
};

// Appends one encoded frame to `out`. A body made by EncodedBody is copied
// verbatim.
void AppendFrame(MessageType type, const json& body, std::vector<uint8_t>* out);

// A body already encoded as one MessagePack map (the caller guarantees it),
// held in a json value that AppendFrame recognises: a binary value with a
// private subtype, which a decoded body never is (bodies are maps). Lets the
// daemon send cached encodings (GetMeta's trees) without building a DOM.
json EncodedBody(std::vector<uint8_t> msgpack);
// Building blocks for such bodies: MessagePack headers and scalars, in their
// shortest encodings (as nlohmann::json::to_msgpack and python3-msgpack
// write them; doubles always as float64).
void AppendMsgpackMapHeader(size_t entries, std::vector<uint8_t>* out);
void AppendMsgpackArrayHeader(size_t size, std::vector<uint8_t>* out);
void AppendMsgpackString(std::string_view s, std::vector<uint8_t>* out);
void AppendMsgpackUint(uint64_t v, std::vector<uint8_t>* out);
void AppendMsgpackBool(bool v, std::vector<uint8_t>* out);
void AppendMsgpackInt(int64_t v, std::vector<uint8_t>* out);
void AppendMsgpackDouble(double v, std::vector<uint8_t>* out);  // always 64-bit
void AppendMsgpackBinary(const uint8_t* data, size_t size,
                         std::vector<uint8_t>* out);
std::vector<uint8_t> EncodeFrame(MessageType type, const json& body);
json ErrorBody(const Status& status);
// Turns an Error body back into a Status (Invalid if the body is malformed).
Status StatusFromErrorBody(const json& body);

// Bulk frames carry raw bytes of a blob (docs/protocol.md, "Bulk frames"):
// header flags kFlagBulk, then a 16-byte preamble {u64 blob id, u64 offset
// within the blob} (little-endian), then the payload. They are never
// decoded into a buffer: the receiver reads the payload straight into its
// destination.
inline constexpr uint16_t kFlagBulk = 1;
inline constexpr size_t kBulkPreambleSize = 16;
inline constexpr size_t kBulkHeaderSize = kHeaderSize + kBulkPreambleSize;
// Largest payload of one bulk frame.
inline constexpr uint64_t kMaxBulkChunk = 8u << 20;

// Blobs read back to back into one buffer (ReadBlobs) start at multiples
// of this; GetMeta {relocate: true} gives offsets in that layout.
inline constexpr uint64_t kBlobAlignment = 64;
// Where each blob of `sizes` starts in that layout: 0 for the first, then
// each at the first multiple of kBlobAlignment after the one before it.
// `*total` (if not null) is the layout's size, aligned the same way.
std::vector<uint64_t> ConcatenatedPositions(const std::vector<uint64_t>& sizes,
                                            uint64_t* total);

struct BulkHeader {
  uint16_t type = 0;
  ObjectID blob;
  uint64_t offset = 0;  // of the payload's first byte within the blob
  uint64_t size = 0;    // payload bytes (at most kMaxBulkChunk)
};

// The header and preamble of a bulk frame carrying `size` (<=
// kMaxBulkChunk) payload bytes; the payload follows them on the stream.
std::array<uint8_t, kBulkHeaderSize> EncodeBulkHeader(MessageType type,
                                                      ObjectID blob,
                                                      uint64_t offset,
                                                      uint64_t size);

// Splits a byte stream into frames. Not thread-safe.
class FrameDecoder {
 public:
  explicit FrameDecoder(uint32_t max_frame = kDefaultMaxFrame)
      : max_frame_(max_frame) {}

  // Appends received bytes.
  void Feed(const uint8_t* data, size_t size);
  // The next complete frame, std::nullopt if more bytes are needed, or
  // Invalid if the stream is malformed (oversized length, non-zero flags,
  // undecodable or non-map body). After an error the stream is unusable.
  Result<std::optional<Frame>> Next();
  // As Next, but leaves the body undecoded: `body` points into the decoder's
  // buffer and stays valid until the next Feed. The header is checked as by
  // Next; checking the body is the caller's job.
  struct RawFrame {
    uint16_t type = 0;
    const uint8_t* body = nullptr;
    size_t size = 0;
  };
  Result<std::optional<RawFrame>> NextRaw();
  size_t buffered() const { return buffer_.size() - read_pos_; }

  // Bulk frames (flag kFlagBulk; see BulkHeader). Next and NextRaw refuse
  // them (non-zero flags); a peer that accepts them asks NextIsBulk first.
  // True if a whole header is buffered and it has the BULK flag.
  bool NextIsBulk() const;
  // Consumes the header and preamble of the next frame, which must be bulk
  // (NextIsBulk), and returns them; std::nullopt until all 24 bytes are
  // buffered; Invalid if the header is malformed (flags other than BULK, a
  // body shorter than the preamble or a payload over kMaxBulkChunk). The
  // payload is then the next BulkHeader::size bytes of the stream: Take what
  // is buffered, read the rest straight into the destination.
  Result<std::optional<BulkHeader>> NextBulk();
  // Copies up to `max` buffered bytes to `out` and consumes them; returns
  // how many.
  size_t Take(uint8_t* out, size_t max);

 private:
  uint32_t max_frame_;
  std::vector<uint8_t> buffer_;
  size_t read_pos_ = 0;
};

// Decodes one body (the bytes after the header). Invalid, with a message
// saying what is wrong, unless it is one well-formed MessagePack map with
// string keys nesting at most kMaxBodyDepth maps and arrays (no trailing
// bytes). Ext values become binaries with the ext type as subtype; a
// repeated key keeps its last value. Never recurses on the input.
Result<json> DecodeBody(const uint8_t* data, size_t size);

// The DOM of a body: `body` itself, or, for an EncodedBody, its bytes
// decoded (Invalid if they are not a map).
Result<json> BodyDom(const json& body);

// How deeply `v` nests maps and arrays: 0 for a scalar, 1 for a flat map.
size_t NestingDepth(const json& v);

// True and *out set if `v` is a non-negative integer (MessagePack decodes
// those as unsigned; JSON built in C++ from int literals holds them signed).
bool AsUint(const json& v, uint64_t* out);

// Typed field access: missing or wrongly typed fields are Invalid, with the
// field name in the message.
Result<uint64_t> GetUint(const json& body, const char* key);
Result<int64_t> GetInt(const json& body, const char* key);
Result<std::string> GetString(const json& body, const char* key);
Result<bool> GetBool(const json& body, const char* key, bool fallback);
Result<ObjectID> GetId(const json& body, const char* key);
Result<std::vector<ObjectID>> GetIds(const json& body, const char* key);
Result<std::vector<uint64_t>> GetUints(const json& body, const char* key);
Result<const json*> GetMap(const json& body, const char* key);
json IdsToJson(const std::vector<ObjectID>& ids);
// The body {"ids": [...]} as an EncodedBody: the requests that name only
// objects (GetMeta, Release, Pin, ...) skip building and encoding a DOM,
// which costs tens of microseconds when the code is not in cache.
json IdsBody(const std::vector<ObjectID>& ids);
// The body {"names": [...]} of a GetMeta by name, encoded the same way.
json NamesBody(const std::vector<std::string>& names);
// The body {tree, overwrite, persist[, name][, data]} of CreateObject as an
// EncodedBody; `write_tree` appends the tree's MessagePack to the vector it
// is given (the tree is never copied into a request DOM). With `data`, the
// daemon makes a blob of those bytes, which the tree names as {"id": 0}.
json CreateObjectBody(
    const std::function<void(std::vector<uint8_t>*)>& write_tree,
    bool overwrite, bool persist, const std::string& name,
    const std::vector<uint8_t>* data = nullptr);
// CreateObject's spare-blob fields (docs/protocol.md, "Spare blobs"): the
// bytes of a spare to ask for (0: none), an unused spare to give back, and
// the spare this put fills, trimmed to `trim_size` bytes.
struct SpareBlobFields {
  uint64_t spare = 0;
  ObjectID give_back;
  ObjectID trim;
  uint64_t trim_size = 0;
  ObjectID as;  // `id`: the reserved id the root gets (a spare's "object")
};
// The same body into `*scratch` (cleared first; its capacity is reused:
// a caller that keeps the vector between puts, taking it back from the
// returned body with TakeEncodedBody, writes no fresh memory).
json CreateObjectBody(
    const std::function<void(std::vector<uint8_t>*)>& write_tree,
    bool overwrite, bool persist, const std::string& name,
    const std::vector<uint8_t>* data, std::vector<uint8_t> scratch,
    const SpareBlobFields& spares = {});
// The bytes of an EncodedBody, moved out of it (empty for any other json).
std::vector<uint8_t> TakeEncodedBody(json&& body);

}  // namespace trellis::protocol
