// msgpack_bench: the MessagePack decoders against the libraries that could
// replace them, in one run (issue 13; results in
// bench/results/msgpack_bench.md).
//
//   msgpack_bench [google benchmark flags]
//
// Bodies (real traffic, recorded by python/src/make_msgpack_corpus.py):
//   get_meta_df46   the GetMeta reply of a 46-column int64 DataFrame (9.8 KB:
//                   48 nodes), as the daemon's encoder writes it;
//   create_df200    the CreateObject request of a 200-column int64 DataFrame
//                   (23 KB), as the extension's tree writer writes it;
//   ids             {"ids": [id]} (protocol::IdsBody), the commonest request;
//   get_meta_mixed  the GetMeta reply of an 8-column frame of mixed dtypes
//                   (int, float, bool, str, datetime, categorical, Int64:
//                   3.3 KB, 36 nodes).
//
// The daemon's side (bodies -> nlohmann::json, with the kMaxBodyDepth limit):
//   Json/Product        protocol::DecodeBody as built: msgpack-cxx's
//                       visitor parse (msgpack::parse) into a bounded DOM
//                       builder.
//   Json/NlohmannSax    json::sax_parse (nlohmann's public API) into the
//                       same DOM builder.
//   Json/NlohmannDetail json::sax_parse into nlohmann's internal
//                       detail::json_sax_dom_parser wrapped with the depth
//                       check: DecodeBody before issue 13.
//   Json/FromMsgpack    json::from_msgpack: no depth limit, so not usable on
//                       peer input; the library's own speed, for reference.
//   Parse/NlohmannSax, Parse/MsgpackCxx: the two parsers with handlers that
//                       build nothing, i.e. the cost of parsing alone.
//   Encode/Product      the body written back from its DOM through
//                       protocol::AppendMsgpack* as built (msgpack-cxx's
//                       packer, one out-of-line call per item): what the
//                       daemon's and the extension's tree writers call.
//   Encode/HandWritten  the same through the hand-written AppendMsgpack*
//                       protocol.cc had before issue 13 (also out of line).
//   Encode/MsgpackCxx   the same through one msgpack-cxx packer, inline.
//                       All three write the same bytes (these bodies hold no
//                       floats, which the packer would write as integers
//                       when integral; AppendMsgpackDouble does not).
//
// The extension's side (GetMeta reply -> Python objects, GIL held; Python
// embedded in this process):
//   Py/HandWritten        trellis::python::FromMsgpack (tree_decode.cc).
//   Py/HandWrittenBlocks  the same with frame_blocks (what a get uses).
//   Py/MsgpackCxx         msgpack-cxx's visitor parse building the same
//                         Python objects (same shared-string cache).
//   Py/PythonMsgpack      python3-msgpack's unpackb (its C extension).
//   Py/ViaJson            FromJson(DecodeBody(...)): a JSON DOM first, then
//                         Python objects (as ListObjects replies still go).
#include <benchmark/benchmark.h>
#include <pybind11/embed.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <msgpack.hpp>
#include <string>
#include <vector>

#include "common/json_dom_builder.h"
#include "common/protocol.h"
#include "src/errors.h"  // python/src (python/ is on the include path)
#include "src/json_convert.h"
#include "src/tree_decode.h"

namespace {

namespace py = pybind11;
using trellis::protocol::json;
using trellis::protocol::kMaxBodyDepth;

std::vector<uint8_t> ReadFile(const std::string& relative, size_t skip) {
  std::string path = std::string(TRELLIS_SOURCE_DIR) + "/" + relative;
  std::ifstream in(path, std::ios::binary);
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
  if (bytes.size() <= skip) {
    std::fprintf(stderr, "msgpack_bench: cannot read %s\n", path.c_str());
    std::exit(1);
  }
  return std::vector<uint8_t>(bytes.begin() + skip, bytes.end());
}

const std::vector<uint8_t>& Body(int which) {
  static const std::vector<uint8_t> bodies[4] = {
      // control byte, then the reply body
      ReadFile("python/src/tree_decode_fuzz_corpus/get_meta_df46_int64", 1),
      // two control bytes and the frame header, then the request body
      ReadFile("src/common/fuzz_corpus/create_object_df200_int64",
               2 + trellis::protocol::kHeaderSize),
      trellis::protocol::IdsBody({trellis::ObjectID(0x2a00000000000013)})
          .get_binary(),
      ReadFile("python/src/tree_decode_fuzz_corpus/get_meta_df_mixed", 1),
  };
  return bodies[which];
}
const char* const kBodyNames[] = {"get_meta_df46", "create_df200", "ids",
                                  "get_meta_mixed"};

// ------------------------------------------------ JSON DOM: the candidates

// nlohmann's SAX parser feeding the DOM builder DecodeBody uses.
struct NlohmannSax {
  trellis::protocol::JsonDomBuilder dom;
  bool Value(json&& v) {
    dom.Value(std::move(v));
    return true;
  }
  bool null() { return Value(json(nullptr)); }
  bool boolean(bool v) { return Value(json(v)); }
  bool number_integer(json::number_integer_t v) { return Value(json(v)); }
  bool number_unsigned(json::number_unsigned_t v) { return Value(json(v)); }
  bool number_float(json::number_float_t v, const json::string_t&) {
    return Value(json(v));
  }
  bool string(json::string_t& v) { return Value(json(std::move(v))); }
  bool binary(json::binary_t& v) { return Value(json(std::move(v))); }
  bool start_object(size_t) { return dom.Open(json::object()); }
  bool key(json::string_t& v) {
    dom.key() = std::move(v);
    return true;
  }
  bool end_object() {
    dom.Close();
    return true;
  }
  bool start_array(size_t) { return dom.Open(json::array()); }
  bool end_array() {
    dom.Close();
    return true;
  }
  bool parse_error(size_t, const std::string&, const json::exception&) {
    return false;
  }
};

bool DecodeNlohmannSax(const std::vector<uint8_t>& b, json* out) {
  NlohmannSax sax{trellis::protocol::JsonDomBuilder(out, kMaxBodyDepth)};
  return json::sax_parse(b.begin(), b.end(), &sax,
                         json::input_format_t::msgpack, true);
}

// DecodeBody before issue 13 (nlohmann's private DOM parser), kept here as
// the baseline.
class DetailDom {
 public:
  explicit DetailDom(json& root) : dom_(root, false) {}
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
  bool start_object(size_t) {
    return ++depth_ <= kMaxBodyDepth && dom_.start_object(size_t(-1));
  }
  bool key(json::string_t& v) { return dom_.key(v); }
  bool end_object() {
    --depth_;
    return dom_.end_object();
  }
  bool start_array(size_t) {
    return ++depth_ <= kMaxBodyDepth && dom_.start_array(size_t(-1));
  }
  bool end_array() {
    --depth_;
    return dom_.end_array();
  }
  bool parse_error(size_t, const std::string&, const json::exception&) {
    return false;
  }

 private:
  nlohmann::detail::json_sax_dom_parser<json> dom_;
  size_t depth_ = 0;
};

bool DecodeNlohmannDetail(const std::vector<uint8_t>& b, json* out) {
  DetailDom sax(*out);
  return json::sax_parse(b.begin(), b.end(), &sax,
                         json::input_format_t::msgpack, true);
}

struct NullSax {
  bool null() { return true; }
  bool boolean(bool) { return true; }
  bool number_integer(json::number_integer_t) { return true; }
  bool number_unsigned(json::number_unsigned_t) { return true; }
  bool number_float(json::number_float_t, const json::string_t&) {
    return true;
  }
  bool string(json::string_t&) { return true; }
  bool binary(json::binary_t&) { return true; }
  bool start_object(size_t) { return true; }
  bool key(json::string_t&) { return true; }
  bool end_object() { return true; }
  bool start_array(size_t) { return true; }
  bool end_array() { return true; }
  bool parse_error(size_t, const std::string&, const json::exception&) {
    return false;
  }
};

struct NullVisitor : msgpack::null_visitor {
  void parse_error(size_t, size_t) {}
  void insufficient_bytes(size_t, size_t) {}
};

void CheckSame(const std::vector<uint8_t>& b, const json& got,
               benchmark::State& state) {
  auto want = trellis::protocol::DecodeBody(b.data(), b.size());
  if (!want.ok() || *want != got) state.SkipWithError("decoded differently");
}

template <bool (*Decode)(const std::vector<uint8_t>&, json*)>
void BM_Json(benchmark::State& state) {
  const std::vector<uint8_t>& b = Body(static_cast<int>(state.range(0)));
  state.SetLabel(kBodyNames[state.range(0)]);
  {
    json check;
    if (!Decode(b, &check)) state.SkipWithError("decode failed");
    CheckSame(b, check, state);
  }
  for (auto _ : state) {
    json out;
    benchmark::DoNotOptimize(Decode(b, &out));
    benchmark::DoNotOptimize(out);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * b.size()));
}

bool DecodeProduct(const std::vector<uint8_t>& b, json* out) {
  auto r = trellis::protocol::DecodeBody(b.data(), b.size());
  if (!r.ok()) return false;
  *out = std::move(r).value();
  return true;
}
bool DecodeFromMsgpack(const std::vector<uint8_t>& b, json* out) {
  *out = json::from_msgpack(b);
  return true;
}
bool ParseNlohmann(const std::vector<uint8_t>& b, json*) {
  NullSax sax;
  return json::sax_parse(b.begin(), b.end(), &sax,
                         json::input_format_t::msgpack, true);
}
bool ParseMsgpackCxx(const std::vector<uint8_t>& b, json*) {
  NullVisitor v;
  size_t off = 0;
  return msgpack::parse(reinterpret_cast<const char*>(b.data()), b.size(), off,
                        v);
}

void BodyArgs(benchmark::internal::Benchmark* b) {
  for (int i = 0; i < 4; ++i) b->Arg(i);
}
void ReplyArgs(benchmark::internal::Benchmark* b) { b->Arg(0)->Arg(3); }

BENCHMARK(BM_Json<DecodeProduct>)->Name("Json/Product")->Apply(BodyArgs);
BENCHMARK(BM_Json<DecodeNlohmannSax>)
    ->Name("Json/NlohmannSax")
    ->Apply(BodyArgs);
BENCHMARK(BM_Json<DecodeNlohmannDetail>)
    ->Name("Json/NlohmannDetail")
    ->Apply(BodyArgs);
BENCHMARK(BM_Json<DecodeFromMsgpack>)
    ->Name("Json/FromMsgpack")
    ->Apply(BodyArgs);

template <bool (*Parse)(const std::vector<uint8_t>&, json*)>
void BM_Parse(benchmark::State& state) {
  const std::vector<uint8_t>& b = Body(static_cast<int>(state.range(0)));
  state.SetLabel(kBodyNames[state.range(0)]);
  for (auto _ : state) benchmark::DoNotOptimize(Parse(b, nullptr));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * b.size()));
}
BENCHMARK(BM_Parse<ParseNlohmann>)->Name("Parse/NlohmannSax")->Apply(BodyArgs);
BENCHMARK(BM_Parse<ParseMsgpackCxx>)->Name("Parse/MsgpackCxx")->Apply(BodyArgs);

// ------------------------------------------------------ encoders compared

// Walks a DOM into a writer: the same calls the daemon's tree encoder and
// the extension's tree writer make, minus their own walking.
template <typename W>
void Walk(const json& v, W& w) {
  switch (v.type()) {
    case json::value_t::object:
      w.Map(v.size());
      for (const auto& [k, item] : v.items()) {
        w.Str(k);
        Walk(item, w);
      }
      return;
    case json::value_t::array:
      w.Array(v.size());
      for (const json& item : v) Walk(item, w);
      return;
    case json::value_t::string:
      return w.Str(v.get_ref<const std::string&>());
    case json::value_t::number_unsigned:
      return w.Uint(v.get<uint64_t>());
    case json::value_t::number_integer:
      return w.Int(v.get<int64_t>());
    case json::value_t::number_float:
      return w.Double(v.get<double>());
    case json::value_t::boolean:
      return w.Bool(v.get<bool>());
    case json::value_t::binary:
      return w.Bin(v.get_binary().data(), v.get_binary().size());
    default:
      return w.Nil();
  }
}

// The hand-written encoder protocol.cc had before issue 13, kept as the
// baseline of Encode/HandWritten; not inlined, as when it was in protocol.cc.
namespace old_encoder {
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
__attribute__((noinline)) void AppendMsgpackMapHeader(
    size_t entries, std::vector<uint8_t>* out) {
  AppendHeader(entries, 0x80, 16, 0xde, out);
}

__attribute__((noinline)) void AppendMsgpackBool(bool v,
                                                 std::vector<uint8_t>* out) {
  out->push_back(v ? 0xc3 : 0xc2);
}

__attribute__((noinline)) void AppendMsgpackArrayHeader(
    size_t size, std::vector<uint8_t>* out) {
  AppendHeader(size, 0x90, 16, 0xdc, out);
}

__attribute__((noinline)) void AppendMsgpackString(std::string_view s,
                                                   std::vector<uint8_t>* out) {
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

__attribute__((noinline)) void AppendMsgpackUint(uint64_t v,
                                                 std::vector<uint8_t>* out) {
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

__attribute__((noinline)) void AppendMsgpackInt(int64_t v,
                                                std::vector<uint8_t>* out) {
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

__attribute__((noinline)) void AppendMsgpackDouble(double v,
                                                   std::vector<uint8_t>* out) {
  uint64_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  out->push_back(0xcb);
  PutBe(bits, 8, out);
}

__attribute__((noinline)) void AppendMsgpackBinary(const uint8_t* data,
                                                   size_t size,
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
}  // namespace old_encoder

template <void (*kMap)(size_t, std::vector<uint8_t>*),
          void (*kArray)(size_t, std::vector<uint8_t>*),
          void (*kStr)(std::string_view, std::vector<uint8_t>*),
          void (*kUint)(uint64_t, std::vector<uint8_t>*),
          void (*kInt)(int64_t, std::vector<uint8_t>*),
          void (*kDouble)(double, std::vector<uint8_t>*),
          void (*kBool)(bool, std::vector<uint8_t>*),
          void (*kBin)(const uint8_t*, size_t, std::vector<uint8_t>*)>
struct AppendWriter {
  std::vector<uint8_t>* out;
  void Map(size_t n) { kMap(n, out); }
  void Array(size_t n) { kArray(n, out); }
  void Str(std::string_view s) { kStr(s, out); }
  void Uint(uint64_t v) { kUint(v, out); }
  void Int(int64_t v) { kInt(v, out); }
  void Double(double v) { kDouble(v, out); }
  void Bool(bool v) { kBool(v, out); }
  void Bin(const uint8_t* d, size_t n) { kBin(d, n, out); }
  void Nil() { out->push_back(0xc0); }
};
struct VectorStream {
  std::vector<uint8_t>* out;
  void write(const char* b, size_t n) { out->insert(out->end(), b, b + n); }
};

struct PackerWriter {
  VectorStream stream;
  msgpack::packer<VectorStream> pk{stream};
  void Map(size_t n) { pk.pack_map(static_cast<uint32_t>(n)); }
  void Array(size_t n) { pk.pack_array(static_cast<uint32_t>(n)); }
  void Str(std::string_view s) {
    pk.pack_str(static_cast<uint32_t>(s.size()));
    pk.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
  }
  void Uint(uint64_t v) { pk.pack_uint64(v); }
  void Int(int64_t v) { pk.pack_int64(v); }
  void Double(double v) { pk.pack_double(v); }
  void Bool(bool v) { v ? pk.pack_true() : pk.pack_false(); }
  void Bin(const uint8_t* d, size_t n) {
    pk.pack_bin(static_cast<uint32_t>(n));
    pk.pack_bin_body(reinterpret_cast<const char*>(d),
                     static_cast<uint32_t>(n));
  }
  void Nil() { pk.pack_nil(); }
};

// The AppendWriter of the AppendMsgpack* functions of namespace `ns`.
#define APPEND_WRITER_OF(ns)                                             \
  AppendWriter<ns::AppendMsgpackMapHeader, ns::AppendMsgpackArrayHeader, \
               ns::AppendMsgpackString, ns::AppendMsgpackUint,           \
               ns::AppendMsgpackInt, ns::AppendMsgpackDouble,            \
               ns::AppendMsgpackBool, ns::AppendMsgpackBinary>
void EncodeProduct(const json& v, std::vector<uint8_t>* out) {
  APPEND_WRITER_OF(trellis::protocol) w{out};
  Walk(v, w);
}
void EncodeHandWritten(const json& v, std::vector<uint8_t>* out) {
  APPEND_WRITER_OF(old_encoder) w{out};
  Walk(v, w);
}
#undef APPEND_WRITER_OF
void EncodePacker(const json& v, std::vector<uint8_t>* out) {
  PackerWriter w{VectorStream{out}};
  Walk(v, w);
}

template <void (*Encode)(const json&, std::vector<uint8_t>*)>
void BM_Encode(benchmark::State& state) {
  const std::vector<uint8_t>& b = Body(static_cast<int>(state.range(0)));
  state.SetLabel(kBodyNames[state.range(0)]);
  json dom = trellis::protocol::DecodeBody(b.data(), b.size()).value();
  std::vector<uint8_t> want, got;
  EncodeHandWritten(dom, &want);
  Encode(dom, &got);
  if (got != want) state.SkipWithError("encoded differently");
  for (auto _ : state) {
    std::vector<uint8_t> out;
    out.reserve(b.size());
    Encode(dom, &out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * b.size()));
}
BENCHMARK(BM_Encode<EncodeProduct>)->Name("Encode/Product")->Apply(BodyArgs);
BENCHMARK(BM_Encode<EncodeHandWritten>)
    ->Name("Encode/HandWritten")
    ->Apply(BodyArgs);
BENCHMARK(BM_Encode<EncodePacker>)->Name("Encode/MsgpackCxx")->Apply(BodyArgs);

// ----------------------------------------------- Python objects: candidates

// msgpack-cxx's visitor building what FromMsgpack builds (no frame blocks:
// the visitor is never told byte offsets, which those need).
class PyBuilder : public msgpack::null_visitor {
 public:
  explicit PyBuilder(size_t input_size) : input_size_(input_size) {}
  ~PyBuilder() {
    for (Level& l : stack_) Py_XDECREF(l.key);
    Py_XDECREF(root_);
  }
  PyObject* Release() {
    PyObject* r = root_;
    root_ = nullptr;
    return r;
  }

  bool visit_nil() { return Put(Py_NewRef(Py_None)); }
  bool visit_boolean(bool v) { return Put(PyBool_FromLong(v)); }
  bool visit_positive_integer(uint64_t v) {
    return Put(PyLong_FromUnsignedLongLong(v));
  }
  bool visit_negative_integer(int64_t v) { return Put(PyLong_FromLongLong(v)); }
  bool visit_float32(float v) { return Put(PyFloat_FromDouble(v)); }
  bool visit_float64(double v) { return Put(PyFloat_FromDouble(v)); }
  bool visit_str(const char* v, uint32_t size) {
    return Put(SharedStr(v, size));
  }
  bool visit_bin(const char* v, uint32_t size) {
    return Put(PyBytes_FromStringAndSize(v, size));
  }
  bool visit_ext(const char* v, uint32_t size) {
    return Put(PyBytes_FromStringAndSize(v + 1, size - 1));
  }
  bool start_array(uint32_t n) {
    if (stack_.size() >= kMaxBodyDepth || n > input_size_) return false;
    PyObject* list = PyList_New(n);
    if (!Put(list)) return false;
    stack_.push_back({list, false, 0, nullptr});
    return true;
  }
  bool end_array() {
    stack_.pop_back();
    return true;
  }
  bool start_map(uint32_t n) {
    if (stack_.size() >= kMaxBodyDepth || n > input_size_) return false;
    PyObject* dict = PyDict_New();
    if (!Put(dict)) return false;
    stack_.push_back({dict, true, 0, nullptr});
    return true;
  }
  bool end_map() {
    stack_.pop_back();
    return true;
  }
  void parse_error(size_t, size_t) {}
  void insufficient_bytes(size_t, size_t) {}

 private:
  struct Level {
    PyObject* container;  // borrowed: its parent (or root_) owns it
    bool is_map;
    Py_ssize_t index;
    PyObject* key;  // owned, while its value is being read
  };
  bool Put(PyObject* v) {
    if (!v) return false;
    if (stack_.empty()) {
      root_ = v;
      return true;
    }
    Level& l = stack_.back();
    if (!l.is_map) {
      PyList_SET_ITEM(l.container, l.index++, v);
      return true;
    }
    if (!l.key) {  // a map's items alternate: no key held, so this is one
      if (!PyUnicode_Check(v)) {
        Py_DECREF(v);
        return false;
      }
      l.key = v;
      return true;
    }
    int rc = PyDict_SetItem(l.container, l.key, v);
    Py_DECREF(v);
    Py_CLEAR(l.key);
    return rc == 0;
  }
  PyObject* SharedStr(const char* b, size_t n) {
    if (n == 0 || n > 32) return PyUnicode_DecodeUTF8(b, n, nullptr);
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; ++i)
      h = (h ^ static_cast<uint8_t>(b[i])) * 16777619u;
    Slot& s = slots_[h % 256];
    if (s.value && s.size == n && std::memcmp(s.bytes, b, n) == 0) {
      return Py_NewRef(s.value.ptr());
    }
    PyObject* v = PyUnicode_DecodeUTF8(b, n, nullptr);
    if (v) s = {b, n, py::reinterpret_borrow<py::object>(v)};
    return v;
  }
  struct Slot {
    const char* bytes = nullptr;
    size_t size = 0;
    py::object value;
  };
  size_t input_size_;
  std::vector<Level> stack_;
  PyObject* root_ = nullptr;
  std::array<Slot, 256> slots_;
};

py::object DecodePyMsgpackCxx(const std::vector<uint8_t>& b) {
  PyBuilder builder(b.size());
  size_t off = 0;
  if (!msgpack::parse(reinterpret_cast<const char*>(b.data()), b.size(), off,
                      builder) ||
      off != b.size()) {
    trellis::python::ThrowInvalid("malformed MessagePack");
  }
  return py::reinterpret_steal<py::object>(builder.Release());
}
py::object DecodePyHandWritten(const std::vector<uint8_t>& b) {
  return trellis::python::FromMsgpack(b.data(), b.size());
}
py::object DecodePyHandWrittenBlocks(const std::vector<uint8_t>& b) {
  return trellis::python::FromMsgpack(b.data(), b.size(),
                                      {.frame_blocks = true});
}
py::object DecodePyPythonMsgpack(const std::vector<uint8_t>& b) {
  // Leaked: it must outlive the benchmarks, not the interpreter.
  static py::object* unpackb =
      new py::object(py::module_::import("msgpack").attr("unpackb"));
  return (*unpackb)(
      py::bytes(reinterpret_cast<const char*>(b.data()), b.size()));
}
py::object DecodePyViaJson(const std::vector<uint8_t>& b) {
  return trellis::python::FromJson(
      trellis::protocol::DecodeBody(b.data(), b.size()).value());
}

template <py::object (*Decode)(const std::vector<uint8_t>&)>
void BM_Py(benchmark::State& state) {
  const std::vector<uint8_t>& b = Body(static_cast<int>(state.range(0)));
  state.SetLabel(kBodyNames[state.range(0)]);
  py::object want = DecodePyHandWritten(b);
  py::object got = Decode(b);
  if (Decode != DecodePyHandWrittenBlocks && !want.equal(got)) {
    state.SkipWithError("decoded differently");
  }
  for (auto _ : state) benchmark::DoNotOptimize(Decode(b).ptr());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * b.size()));
}
BENCHMARK(BM_Py<DecodePyHandWritten>)->Name("Py/HandWritten")->Apply(ReplyArgs);
BENCHMARK(BM_Py<DecodePyHandWrittenBlocks>)
    ->Name("Py/HandWrittenBlocks")
    ->Apply(ReplyArgs);
BENCHMARK(BM_Py<DecodePyMsgpackCxx>)->Name("Py/MsgpackCxx")->Apply(ReplyArgs);
BENCHMARK(BM_Py<DecodePyPythonMsgpack>)
    ->Name("Py/PythonMsgpack")
    ->Apply(ReplyArgs);
BENCHMARK(BM_Py<DecodePyViaJson>)->Name("Py/ViaJson")->Apply(ReplyArgs);

}  // namespace

// ThrowInvalid needs the exception classes of the package.
PYBIND11_EMBEDDED_MODULE(msgpack_bench_errors, m) {
  trellis::python::RegisterErrors(m);
}

int main(int argc, char** argv) {
  py::scoped_interpreter python;
  py::module_::import("msgpack_bench_errors");
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
