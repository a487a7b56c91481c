// libFuzzer target for the wire decoder (docs/protocol.md): FrameDecoder,
// DecodeBody, the typed field accessors and the metadata-tree validation a
// client applies to trees it receives. Built by cmake/TrellisFuzz.cmake when
// clang++ is present; `ctest -R protocol_fuzz` runs it for a few seconds.
//
// Input layout: byte 0 picks the decoder's frame limit (low 2 bits) and
// byte 1 seeds the chunk sizes the rest of the input is fed in, so that the
// fuzzer explores both the bytes and how a socket happens to split them.
// Everything after those two bytes is the byte stream a peer sent.
//
// Bulk frames (flag BULK) are taken as a peer that accepts them takes them:
// NextBulk, then the payload with Take.
//
// Invariants checked (a violation aborts, which libFuzzer reports):
//  * the decoder never crashes, hangs or reads out of bounds (ASan/UBSan);
//  * a decoded body is a map, and re-encoding it gives bytes that decode to
//    the same re-encoding (encode . decode is a fixed point after one step);
//  * after an error the decoder keeps returning an error.
//
// The seed corpus in src/common/fuzz_corpus/ holds valid frames of every
// request type and of the replies, each prefixed by the two control bytes;
// they were written with protocol::EncodeFrame.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "client/object_meta_internal.h"
#include "common/protocol.h"
#include "trellis/object.h"
#include "trellis/object_id.h"

namespace {

using trellis::protocol::json;
namespace protocol = trellis::protocol;

void Check(bool condition) {
  if (!condition) std::abort();
}

// Reads every field a request or reply may carry through every accessor.
// The results do not matter; only that no accessor misbehaves.
void ExerciseAccessors(const json& body) {
  static const char* const kKeys[] = {
      "version",     "sizes",    "data",
      "ids",         "tree",     "name",
      "overwrite",   "persist",  "wait",
      "timeout_ms",  "pattern",  "limit",
      "deep",        "force",    "id",
      "offsets",     "trees",    "held",
      "names",       "objects",  "deleted",
      "code",        "message",  "arena_size",
      "instance_id", "reserved", "max_inline_blob",
      "client_id",   "relocate", "token",
      "transport",   "missing"};
  for (const char* key : kKeys) {
    (void)protocol::GetUint(body, key);
    (void)protocol::GetInt(body, key);
    auto s = protocol::GetString(body, key);
    if (s.ok()) (void)trellis::ObjectID::FromString(*s);
    (void)protocol::GetBool(body, key, true);
    (void)protocol::GetId(body, key);
    auto ids = protocol::GetIds(body, key);
    if (ids.ok()) (void)protocol::IdsToJson(*ids);
    (void)protocol::GetUints(body, key);
    (void)protocol::GetMap(body, key);
  }
  (void)protocol::StatusFromErrorBody(body);

  // Trees: what CreateObject carries and what GetMeta/ListObjects return.
  auto tree = body.find("tree");
  if (tree != body.end()) {
    auto meta = trellis::ObjectMetaAccess::FromJson(*tree);
    if (meta.ok()) {
      (void)meta->type_name();
      (void)meta->id();
      (void)meta->nbytes();
      (void)meta->is_blob();
      for (const std::string& name : meta->MemberNames()) {
        (void)meta->GetMember(name);
        (void)meta->GetBlobMember(name);  // no lease: must fail cleanly
      }
      (void)meta->AsBlob();
    }
  }
  for (const char* list : {"trees", "objects"}) {
    auto it = body.find(list);
    if (it == body.end() || !it->is_array()) continue;
    for (const json& t : *it) (void)trellis::ObjectMetaAccess::FromJson(t);
  }
}

// encode(decode(x)) must decode again, to something that encodes the same.
void CheckRoundTrip(uint16_t type, const json& body) {
  std::vector<uint8_t> once =
      protocol::EncodeFrame(static_cast<protocol::MessageType>(type), body);
  protocol::FrameDecoder decoder(UINT32_MAX);
  decoder.Feed(once.data(), once.size());
  auto frame = decoder.Next();
  Check(frame.ok() && frame->has_value());
  Check((*frame)->type == type);
  Check(decoder.buffered() == 0);
  std::vector<uint8_t> twice = protocol::EncodeFrame(
      static_cast<protocol::MessageType>(type), (*frame)->body);
  Check(once == twice);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  static const uint32_t kLimits[] = {protocol::kDefaultMaxFrame, 64 * 1024, 256,
                                     16};
  protocol::FrameDecoder decoder(kLimits[data[0] & 3]);
  uint32_t rng = 0x9e3779b9u ^ (uint32_t{data[1]} * 0x01000193u) ^ data[0];
  data += 2;
  size -= 2;

  bool failed = false;
  size_t frames = 0;
  uint64_t payload_left = 0;  // of the current bulk frame
  static uint8_t payload[4096];
  size_t pos = 0;
  while (pos < size && !failed) {
    // xorshift32: chunks of 1..64 bytes, or now and then the whole rest.
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    size_t chunk = (rng & 0xf00) == 0 ? size - pos : 1 + (rng & 63);
    if (chunk > size - pos) chunk = size - pos;
    decoder.Feed(data + pos, chunk);
    pos += chunk;
    while (true) {
      // Bulk frames, as a peer that accepts them takes them: the header,
      // then the payload copied out as it arrives.
      if (payload_left > 0) {
        payload_left -= decoder.Take(
            payload, std::min<uint64_t>(payload_left, sizeof(payload)));
        if (payload_left > 0 && decoder.buffered() == 0) break;
        continue;
      }
      if (decoder.NextIsBulk()) {
        auto bulk = decoder.NextBulk();
        if (!bulk.ok()) {
          Check(bulk.status().IsInvalid());
          failed = true;
          break;
        }
        if (!bulk->has_value()) break;
        Check((*bulk)->size <= protocol::kMaxBulkChunk);
        payload_left = (*bulk)->size;
        ++frames;
        continue;
      }
      auto next = decoder.Next();
      if (!next.ok()) {
        Check(next.status().IsInvalid());
        failed = true;
        break;
      }
      if (!next->has_value()) break;
      const protocol::Frame& frame = **next;
      Check(frame.body.is_object());
      ++frames;
      (void)protocol::MessageTypeName(frame.type);
      (void)protocol::IsRequestType(frame.type);
      ExerciseAccessors(frame.body);
      CheckRoundTrip(frame.type, frame.body);
    }
  }
  // A failed stream stays failed, whatever arrives next.
  if (failed) {
    static const uint8_t kMore[16] = {};
    decoder.Feed(kMore, sizeof(kMore));
    Check(!decoder.Next().ok());
  }
  Check(frames <= size / protocol::kHeaderSize + 1);
  return 0;
}
