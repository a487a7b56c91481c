#include "common/protocol.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>

// msgpack-cxx's packer writes the reference inputs.
#include "common/msgpack.h"

namespace trellis::protocol {
namespace {

TEST(ProtocolTest, FramesRoundTripAcrossArbitrarySplits) {
  std::vector<uint8_t> stream;
  AppendFrame(MessageType::kGetMeta, json{{"ids", {1, 2, 3}}}, &stream);
  AppendFrame(MessageType::kStatus, json::object(), &stream);
  for (size_t split = 0; split <= stream.size(); ++split) {
    FrameDecoder d;
    d.Feed(stream.data(), split);
    std::vector<Frame> frames;
    while (true) {
      auto f = d.Next();
      ASSERT_TRUE(f.ok());
      if (!f->has_value()) break;
      frames.push_back(**f);
    }
    d.Feed(stream.data() + split, stream.size() - split);
    while (true) {
      auto f = d.Next();
      ASSERT_TRUE(f.ok());
      if (!f->has_value()) break;
      frames.push_back(**f);
    }
    ASSERT_EQ(frames.size(), 2u) << "split " << split;
    EXPECT_EQ(frames[0].type, static_cast<uint16_t>(MessageType::kGetMeta));
    EXPECT_EQ(*GetIds(frames[0].body, "ids"),
              (std::vector<ObjectID>{ObjectID(1), ObjectID(2), ObjectID(3)}));
    EXPECT_EQ(frames[1].type, static_cast<uint16_t>(MessageType::kStatus));
  }
}

TEST(ProtocolTest, EncodedBodiesMatchTheLibraryEncoding) {
  // Lengths and values at every boundary of the MessagePack size classes.
  std::vector<uint64_t> values = {
      0,       0x7f,       0x80,        0xff,       0x100,       0xffff,
      0x10000, 0xffffffff, 0x100000000, UINT64_MAX, 0x2a00000013};
  for (size_t n :
       {size_t{0}, size_t{15}, size_t{16}, size_t{65535}, size_t{65536}}) {
    std::string key(n % 300, 'k');  // fixstr, str8 and str16 keys
    std::vector<uint8_t> bytes;
    json expected = json::object();
    json array = json::array();
    AppendMsgpackMapHeader(2, &bytes);
    AppendMsgpackString("a" + key, &bytes);
    AppendMsgpackArrayHeader(n, &bytes);
    for (size_t i = 0; i < n; ++i) {
      uint64_t v = values[i % values.size()];
      AppendMsgpackUint(v, &bytes);
      array.push_back(v);
    }
    AppendMsgpackString("b", &bytes);
    AppendMsgpackMapHeader(0, &bytes);
    expected["a" + key] = array;
    expected["b"] = json::object();

    std::vector<uint8_t> frame;
    AppendFrame(MessageType::kReply, EncodedBody(bytes), &frame);
    EXPECT_EQ(std::vector<uint8_t>(frame.begin() + kHeaderSize, frame.end()),
              bytes);
    std::vector<uint8_t> library;
    AppendFrame(MessageType::kReply, expected, &library);
    EXPECT_EQ(frame, library) << "n " << n;
    FrameDecoder d;
    d.Feed(frame.data(), frame.size());
    auto f = d.Next();
    ASSERT_TRUE(f.ok() && f->has_value());
    EXPECT_EQ((*f)->body, expected);
  }
  std::vector<uint8_t> bytes;
  AppendMsgpackString(std::string(70000, 'x'), &bytes);  // str32
  EXPECT_EQ(bytes, json::to_msgpack(json(std::string(70000, 'x'))));
}

TEST(ProtocolTest, IdsBodyMatchesTheLibraryEncoding) {
  for (size_t n : {0, 1, 15, 16, 70000}) {
    std::vector<ObjectID> ids;
    for (size_t i = 0; i < n; ++i) {
      ids.emplace_back(i % 3 == 0 ? i : (uint64_t{1} << 63) + i * 977);
    }
    std::vector<uint8_t> fast, library;
    AppendFrame(MessageType::kGetMeta, IdsBody(ids), &fast);
    AppendFrame(MessageType::kGetMeta, json{{"ids", IdsToJson(ids)}}, &library);
    EXPECT_EQ(fast, library) << "n " << n;
  }
  for (bool v : {false, true}) {
    std::vector<uint8_t> bytes;
    AppendMsgpackBool(v, &bytes);
    EXPECT_EQ(bytes, json::to_msgpack(json(v)));
  }
}

TEST(ProtocolTest, RequestBodiesDecodeToTheirDom) {
  auto decode = [](const json& encoded) {
    std::vector<uint8_t> frame;
    AppendFrame(MessageType::kGetMeta, encoded, &frame);
    return *DecodeBody(frame.data() + kHeaderSize, frame.size() - kHeaderSize);
  };
  EXPECT_EQ(decode(NamesBody({"a", std::string(40, 'n')})),
            (json{{"names", {"a", std::string(40, 'n')}}}));
  json tree = {{"typename", "t"}, {"fields", {{"k", {1, -2, 2.5}}}}};
  auto write = [&](std::vector<uint8_t>* out) { json::to_msgpack(tree, *out); };
  EXPECT_EQ(decode(CreateObjectBody(write, true, false, "")),
            (json{{"tree", tree}, {"overwrite", true}, {"persist", false}}));
  EXPECT_EQ(decode(CreateObjectBody(write, false, true, "x")),
            (json{{"tree", tree},
                  {"overwrite", false},
                  {"persist", true},
                  {"name", "x"}}));
}

TEST(ProtocolTest, ScalarBuildingBlocksDecodeToTheirValues) {
  for (int64_t v :
       {int64_t{0}, int64_t{5}, int64_t{-1}, int64_t{-32}, int64_t{-33},
        int64_t{-128}, int64_t{-129}, int64_t{-32768}, int64_t{-32769},
        int64_t{INT32_MIN}, int64_t{INT32_MIN} - 1, INT64_MIN, INT64_MAX}) {
    std::vector<uint8_t> bytes;
    AppendMsgpackInt(v, &bytes);
    EXPECT_EQ(json::from_msgpack(bytes), json(v)) << v;
  }
  for (double v : {0.0, -1.5, 1e300, 0.1}) {
    std::vector<uint8_t> bytes;
    AppendMsgpackDouble(v, &bytes);
    EXPECT_EQ(json::from_msgpack(bytes).get<double>(), v);
  }
  for (size_t n : {0, 255, 256, 70000}) {
    std::vector<uint8_t> data(n, 0xab), bytes;
    AppendMsgpackBinary(data.data(), n, &bytes);
    EXPECT_EQ(json::from_msgpack(bytes).get_binary(), data) << n;
  }
}

TEST(ProtocolTest, OversizedLengthIsRejectedBeforeBuffering) {
  FrameDecoder d(1024);
  uint8_t header[8] = {0xff, 0xff, 0xff, 0x7f, 1, 0, 0, 0};
  d.Feed(header, sizeof(header));
  auto f = d.Next();
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("exceeds the limit"), std::string::npos);
}

TEST(ProtocolTest, NonZeroFlagsAreRejected) {
  auto bytes = EncodeFrame(MessageType::kStatus, json::object());
  bytes[6] = 1;
  FrameDecoder d;
  d.Feed(bytes.data(), bytes.size());
  EXPECT_FALSE(d.Next().ok());
}

TEST(ProtocolTest, GarbageBodiesAreInvalidNotCrashes) {
  const std::vector<std::vector<uint8_t>> bodies = {
      {0xc1},                          // never-used MessagePack byte
      {0x92, 0x01},                    // array of 2 with one element
      {0x01},                          // a number, not a map
      {0xdb, 0xff, 0xff, 0xff, 0xff},  // str32 of 4 GiB, no bytes
      {0x81, 0xa1, 'a'},               // map with a key and no value
  };
  for (const auto& body : bodies) {
    EXPECT_FALSE(DecodeBody(body.data(), body.size()).ok());
  }
}

TEST(ProtocolTest, DeepNestingIsRefused) {
  // {"a": [[[[...]]]]} nested 100000 deep: must fail cleanly, not recurse
  // off the stack.
  std::vector<uint8_t> body = {0x81, 0xa1, 'a'};
  body.insert(body.end(), 100000, 0x91);
  body.push_back(0xc0);
  auto r = DecodeBody(body.data(), body.size());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("deeper"), std::string::npos);
}

TEST(ProtocolTest, MalformedBodiesSayWhatIsWrong) {
  auto message = [](std::vector<uint8_t> body) {
    auto r = DecodeBody(body.data(), body.size());
    EXPECT_FALSE(r.ok());
    return r.status().message();
  };
  EXPECT_EQ(message({0x81, 0xa1, 'a', 0xc1}),
            "frame body is not valid MessagePack: byte 3 is not a "
            "MessagePack type");
  EXPECT_EQ(message({0x81, 0xa1, 'a'}),
            "frame body is not valid MessagePack: truncated");
  EXPECT_EQ(message({}), "frame body is not valid MessagePack: truncated");
  EXPECT_EQ(message({0x80, 0x01, 0x02}),
            "frame body is not valid MessagePack: 2 trailing bytes after the "
            "value");
  EXPECT_EQ(message({0x81, 0x01, 0x02}),
            "frame body is not valid MessagePack: a map key is not a string");
  EXPECT_EQ(message({0x81, 0x80, 0x02}),
            "frame body is not valid MessagePack: a map key is not a string");
  EXPECT_EQ(message({0x92, 0x01, 0x02}),
            "frame body must be a MessagePack map");
  std::vector<uint8_t> deep(64, 0x91);  // 64 arrays in a map: 65 levels
  deep.insert(deep.begin(), {0x81, 0xa1, 'a'});
  deep.push_back(0xc0);
  EXPECT_EQ(message(deep),
            "frame body nests deeper than 64 levels of maps and arrays");
  deep.erase(deep.begin() + 3);  // 64 levels: the limit itself is fine
  EXPECT_TRUE(DecodeBody(deep.data(), deep.size()).ok());
  // An ext32 claiming 4 GiB - 1 bytes (msgpack-cxx throws on it).
  EXPECT_NE(message({0x81, 0xa1, 'a', 0xc9, 0xff, 0xff, 0xff, 0xff, 1})
                .find("not valid MessagePack"),
            std::string::npos);
}

// Differential: DecodeBody (msgpack-cxx's parser) against nlohmann's own
// MessagePack reader, on bodies msgpack-cxx's packer writes with values at
// every size and width boundary (in shortest and in wider encodings), and
// on every prefix and on random corruptions of them. Both must agree on
// whether a body is valid and on its DOM (compared re-encoded, so that NaN
// equals NaN).
struct VectorStream {
  std::vector<uint8_t>* out;
  void write(const char* b, size_t n) { out->insert(out->end(), b, b + n); }
};

std::vector<std::vector<uint8_t>> ReferenceBodies() {
  std::vector<std::vector<uint8_t>> bodies;
  auto body = [&](auto&& pack_value) {
    std::vector<uint8_t> out;
    VectorStream stream{&out};
    msgpack::packer<VectorStream> p(stream);
    p.pack_map(2);
    p.pack(std::string("v"));
    pack_value(p);
    p.pack(std::string("w"));
    p.pack_nil();
    bodies.push_back(std::move(out));
  };
  using P = msgpack::packer<VectorStream>;
  for (uint64_t u :
       {uint64_t{0}, uint64_t{0x7f}, uint64_t{0x80}, uint64_t{0xff},
        uint64_t{0x100}, uint64_t{0xffff}, uint64_t{0x10000},
        uint64_t{0xffffffff}, uint64_t{0x100000000}, UINT64_MAX}) {
    body([&](P& p) { p.pack_uint64(u); });
    body([&](P& p) { p.pack_fix_uint64(u); });  // 9 bytes whatever the value
    if (u <= 0xff) body([&](P& p) { p.pack_fix_uint8(uint8_t(u)); });
  }
  for (int64_t i :
       {int64_t{-1}, int64_t{-32}, int64_t{-33}, int64_t{-128}, int64_t{-129},
        int64_t{-32768}, int64_t{-32769}, int64_t{INT32_MIN},
        int64_t{INT32_MIN} - 1, INT64_MIN, INT64_MAX, int64_t{5}}) {
    body([&](P& p) { p.pack_int64(i); });
    body([&](P& p) { p.pack_fix_int64(i); });
    if (i >= INT8_MIN && i <= INT8_MAX) {
      body([&](P& p) { p.pack_fix_int8(int8_t(i)); });  // int8 of 5, too
    }
  }
  // Floats written by hand: the packer writes integral ones as integers.
  auto float_body = [&](uint8_t tag, uint64_t bits, int bytes) {
    std::vector<uint8_t> out = {0x82, 0xa1, 'v', tag};
    for (int i = bytes - 1; i >= 0; --i)
      out.push_back(uint8_t(bits >> (8 * i)));
    out.insert(out.end(), {0xa1, 'w', 0xc0});
    bodies.push_back(std::move(out));
  };
  for (double d : {0.0, -0.0, 1.5, 2.0, 1e300,
                   std::numeric_limits<double>::infinity(), std::nan("")}) {
    uint64_t bits64;
    std::memcpy(&bits64, &d, sizeof bits64);
    float_body(0xcb, bits64, 8);
    float f = static_cast<float>(d);
    uint32_t bits32;
    std::memcpy(&bits32, &f, sizeof bits32);
    float_body(0xca, bits32, 4);
  }
  for (size_t n : {0, 1, 31, 32, 255, 256, 65535, 65536}) {
    std::string s(n, 's');
    body([&](P& p) { p.pack(s); });
    body([&](P& p) {
      p.pack_bin(uint32_t(n));
      p.pack_bin_body(s.data(), uint32_t(n));
    });
  }
  for (size_t n : {1, 2, 4, 8, 16, 3, 255, 256, 65536}) {
    std::string s(n, 'e');
    body([&](P& p) {
      p.pack_ext(n, int8_t(-1));
      p.pack_ext_body(s.data(), uint32_t(n));
    });
  }
  body([](P& p) {
    p.pack_map(2);  // a repeated key: the last value counts
    p.pack(std::string("k"));
    p.pack(1);
    p.pack(std::string("k"));
    p.pack(2);
  });
  body([](P& p) { p.pack_true(); });
  body([](P& p) {
    p.pack_array(3);
    p.pack_map(0);
    p.pack_array(0);
    p.pack(std::string(""));
  });
  for (int levels : {62, 63, 64}) {  // plus the body's map: 63, 64, 65
    body([&](P& p) {
      for (int i = 0; i < levels; ++i) {
        if (i % 2) {
          p.pack_array(1);
        } else {
          p.pack_map(1);
          p.pack(std::string("d"));
        }
      }
      p.pack(7);
    });
  }
  return bodies;
}

// What nlohmann's reader says of `body`: its DOM re-encoded, or nullopt if
// it is not a body DecodeBody must accept.
std::optional<std::vector<uint8_t>> Reference(
    const std::vector<uint8_t>& body) {
  json dom;
  try {
    dom = json::from_msgpack(body);
  } catch (const json::exception&) {
    return std::nullopt;
  }
  if (!dom.is_object() || NestingDepth(dom) > kMaxBodyDepth) {
    return std::nullopt;
  }
  return json::to_msgpack(dom);
}

void ExpectSameAsReference(const std::vector<uint8_t>& body) {
  auto got = DecodeBody(body.data(), body.size());
  auto want = Reference(body);
  ASSERT_EQ(got.ok(), want.has_value())
      << json::from_msgpack(body, true, false);
  if (got.ok()) {
    EXPECT_EQ(json::to_msgpack(*got), *want);
  }
}

TEST(ProtocolTest, DecodeBodyAgreesWithNlohmannsReader) {
  std::vector<std::vector<uint8_t>> bodies = ReferenceBodies();
  size_t valid = 0;
  for (const auto& body : bodies) {
    ASSERT_NO_FATAL_FAILURE(ExpectSameAsReference(body));
    valid += DecodeBody(body.data(), body.size()).ok();
  }
  EXPECT_EQ(valid, bodies.size() - 1);  // all but the one nested 65 deep
  std::mt19937 rng(13);
  for (const auto& body : bodies) {
    if (body.size() > 4096) continue;
    for (size_t n = 0; n < body.size(); ++n) {  // every prefix
      ASSERT_NO_FATAL_FAILURE(ExpectSameAsReference(
          std::vector<uint8_t>(body.begin(), body.begin() + n)));
    }
    for (int i = 0; i < 50; ++i) {
      std::vector<uint8_t> damaged = body;
      for (int k = 0; k < 1 + int(rng() % 3); ++k) {
        damaged[rng() % damaged.size()] = static_cast<uint8_t>(rng());
      }
      ASSERT_NO_FATAL_FAILURE(ExpectSameAsReference(damaged));
    }
  }
}

TEST(ProtocolTest, EncodingBuildingBlocksAreTheShortestForms) {
  for (int64_t v :
       {int64_t{0}, int64_t{127}, int64_t{128}, int64_t{-1}, int64_t{-32},
        int64_t{-33}, int64_t{-128}, int64_t{-129}, int64_t{-32768},
        int64_t{-32769}, int64_t{INT32_MIN}, int64_t{INT32_MIN} - 1,
        int64_t{0x10000}, INT64_MIN, INT64_MAX}) {
    std::vector<uint8_t> bytes;
    AppendMsgpackInt(v, &bytes);
    EXPECT_EQ(bytes, json::to_msgpack(json(v))) << v;
  }
  for (size_t n : {0, 255, 256, 65535, 65536}) {
    std::vector<uint8_t> data(n, 0x5a), bytes;
    AppendMsgpackBinary(data.data(), n, &bytes);
    EXPECT_EQ(bytes, json::to_msgpack(json::binary(data))) << n;
  }
  std::vector<uint8_t> bytes;
  AppendMsgpackBool(true, &bytes);
  AppendMsgpackBool(false, &bytes);
  AppendMsgpackDouble(1.5, &bytes);  // always 64-bit, unlike nlohmann
  EXPECT_EQ(bytes, (std::vector<uint8_t>{0xc3, 0xc2, 0xcb, 0x3f, 0xf8, 0, 0, 0,
                                         0, 0, 0}));
  // Integral values stay doubles (msgpack-cxx's packer would write ints).
  for (double d : {0.0, -0.0, 2.0, -7.0, 1e18}) {
    bytes.clear();
    AppendMsgpackDouble(d, &bytes);
    ASSERT_EQ(bytes.size(), 9u);
    EXPECT_EQ(bytes[0], 0xcb);
    json back = json::from_msgpack(bytes);
    EXPECT_TRUE(back.is_number_float()) << d;
    EXPECT_EQ(std::signbit(back.get<double>()), std::signbit(d));
    EXPECT_EQ(back.get<double>(), d);
  }
}

TEST(ProtocolTest, TypedAccessorsNameTheField) {
  json body = {{"id", "not a number"}, {"ids", {1, -2}}, {"n", 5}};
  auto id = GetId(body, "id");
  EXPECT_NE(id.status().message().find("'id'"), std::string::npos);
  EXPECT_FALSE(GetIds(body, "ids").ok());
  EXPECT_NE(GetUint(body, "missing").status().message().find("missing field"),
            std::string::npos);
  EXPECT_EQ(*GetUint(body, "n"), 5u);
  EXPECT_EQ(*GetBool(body, "absent", true), true);
  EXPECT_FALSE(GetBool(body, "n", true).ok());
}

TEST(ProtocolTest, ErrorBodiesRoundTrip) {
  Status st = Status::OutOfMemory("arena full");
  Status back = StatusFromErrorBody(ErrorBody(st));
  EXPECT_TRUE(back.IsOutOfMemory());
  EXPECT_EQ(back.message(), "arena full");
  EXPECT_TRUE(StatusFromErrorBody(json{{"code", 999}}).IsInvalid());
}

TEST(ProtocolTest, BulkFramesInterleaveWithFramesAcrossArbitrarySplits) {
  std::vector<uint8_t> stream;
  AppendFrame(MessageType::kSeal, json{{"ids", {7}}}, &stream);
  const std::string payload = "0123456789";
  auto header =
      EncodeBulkHeader(MessageType::kBlobData, ObjectID(7), 5, payload.size());
  stream.insert(stream.end(), header.begin(), header.end());
  stream.insert(stream.end(), payload.begin(), payload.end());
  AppendFrame(MessageType::kStatus, json::object(), &stream);
  for (size_t split = 0; split <= stream.size(); ++split) {
    FrameDecoder d(64);  // the frame limit does not apply to bulk frames
    std::vector<uint16_t> types;
    std::string got;
    uint64_t left = 0;
    auto drain = [&] {
      while (true) {
        if (left > 0) {
          char buf[4];
          size_t n = d.Take(reinterpret_cast<uint8_t*>(buf),
                            std::min<uint64_t>(left, sizeof(buf)));
          got.append(buf, n);
          left -= n;
          if (n == 0) return;
          continue;
        }
        if (d.NextIsBulk()) {
          auto bulk = d.NextBulk();
          ASSERT_TRUE(bulk.ok()) << bulk.status();
          if (!bulk->has_value()) return;
          EXPECT_EQ((*bulk)->type,
                    static_cast<uint16_t>(MessageType::kBlobData));
          EXPECT_EQ((*bulk)->blob, ObjectID(7));
          EXPECT_EQ((*bulk)->offset, 5u);
          left = (*bulk)->size;
          types.push_back((*bulk)->type);
          continue;
        }
        auto f = d.Next();
        ASSERT_TRUE(f.ok()) << f.status();
        if (!f->has_value()) return;
        types.push_back((*f)->type);
      }
    };
    d.Feed(stream.data(), split);
    drain();
    d.Feed(stream.data() + split, stream.size() - split);
    drain();
    EXPECT_EQ(types, (std::vector<uint16_t>{4, 22, 17})) << "split " << split;
    EXPECT_EQ(got, payload) << "split " << split;
  }
}

TEST(ProtocolTest, MalformedBulkHeadersAreRejected) {
  auto header = [](uint32_t length, uint16_t flags) {
    std::vector<uint8_t> h(kBulkHeaderSize, 0);
    std::memcpy(h.data(), &length, 4);
    h[4] = 22;
    std::memcpy(h.data() + 6, &flags, 2);
    return h;
  };
  struct Case {
    std::vector<uint8_t> bytes;
    const char* says;
  } cases[] = {
      {header(15, 1), "shorter than its 16-byte preamble"},
      {header(16 + (8u << 20) + 1, 1), "exceeds the chunk limit"},
      {header(16, 5), "bulk frame flags must be 1, got 5"},
  };
  for (const Case& c : cases) {
    FrameDecoder d;
    d.Feed(c.bytes.data(), kHeaderSize);  // the header alone suffices
    ASSERT_TRUE(d.NextIsBulk());
    auto bulk = d.NextBulk();
    ASSERT_TRUE(bulk.status().IsInvalid());
    EXPECT_NE(bulk.status().message().find(c.says), std::string::npos)
        << bulk.status();
    EXPECT_FALSE(d.Next().ok());  // and the stream stays failed
  }
  // The largest chunk is fine; Next refuses a bulk frame.
  FrameDecoder d;
  auto largest = header(16 + (8u << 20), 1);
  d.Feed(largest.data(), largest.size());
  EXPECT_FALSE(d.Next().ok());
  auto bulk = d.NextBulk();
  ASSERT_TRUE(bulk.ok() && bulk->has_value());
  EXPECT_EQ((*bulk)->size, kMaxBulkChunk);
}

TEST(ProtocolTest, ConcatenatedPositionsAlignEachBlob) {
  uint64_t total = 1;
  EXPECT_TRUE(ConcatenatedPositions({}, &total).empty());
  EXPECT_EQ(total, 0u);
  EXPECT_EQ(ConcatenatedPositions({0, 1, 64, 65, 3}, &total),
            (std::vector<uint64_t>{0, 0, 64, 128, 256}));
  EXPECT_EQ(total, 320u);
}

TEST(ProtocolTest, BodyDomDecodesEncodedBodies) {
  json dom = {{"ids", {1, 2}}};
  EXPECT_EQ(*BodyDom(dom), dom);
  auto decoded = BodyDom(IdsBody({ObjectID(1), ObjectID(2)}));
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ((*decoded)["ids"], json({1, 2}));
  EXPECT_TRUE(BodyDom(EncodedBody({0xc1})).status().IsInvalid());
}

TEST(ProtocolTest, ReadBlobsIsARequestAndBlobDataIsNot) {
  EXPECT_TRUE(IsRequestType(static_cast<uint16_t>(MessageType::kReadBlobs)));
  EXPECT_FALSE(IsRequestType(static_cast<uint16_t>(MessageType::kBlobData)));
  EXPECT_EQ(MessageTypeName(22), "BlobData");
  EXPECT_EQ(MessageTypeName(23), "ReadBlobs");
  EXPECT_TRUE(IsRequestType(static_cast<uint16_t>(MessageType::kLocate)));
  EXPECT_EQ(MessageTypeName(25), "Locate");
  EXPECT_FALSE(IsRequestType(26));
}

TEST(ObjectIdTest, PrintsAndParses) {
  ObjectID id = ObjectID::Make(0x1234, 0xabcdef);
  EXPECT_EQ(id.ToString(), "o1234000000abcdef");
  EXPECT_EQ(*ObjectID::FromString(id.ToString()), id);
  EXPECT_EQ(id.instance_id(), 0x1234);
  EXPECT_FALSE(ObjectID::FromString("x1234000000abcdef").ok());
  EXPECT_FALSE(ObjectID::FromString("o1234").ok());
  EXPECT_FALSE(ObjectID::FromString("o1234000000abcdeg").ok());
}

}  // namespace
}  // namespace trellis::protocol
