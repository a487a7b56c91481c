#include "server/etcd_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <cassert>
#include <charconv>
#include <cstring>
#include <nlohmann/json.hpp>

namespace trellis::etcd {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::string NormalizeEndpoint(std::string ep) {
  if (ep.find("://") == std::string::npos) ep = "http://" + ep;
  while (!ep.empty() && ep.back() == '/') ep.pop_back();
  return ep;
}

std::string Joined(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : ", ") + p;
  return out;
}

size_t AppendToString(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

// The HTTP headers of every request. "Expect:" stops curl from waiting for
// a "100 Continue" before sending a larger body.
curl_slist* JsonHeaders() {
  curl_slist* h = curl_slist_append(nullptr, "Content-Type: application/json");
  return curl_slist_append(h, "Expect:");
}

void SetCommonOptions(CURL* h, curl_slist* headers) {
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);  // threads: no SIGALRM timeouts
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(h, CURLOPT_POST, 1L);
  curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
  // A peer that vanishes without a FIN (host or network gone) is noticed
  // within a few seconds instead of never on an idle watch stream.
  curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, 2L);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, 1L);
}

// An int64 field of an etcd reply (JSON string or number; absent means 0).
int64_t Int64(const json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end()) return 0;
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_string()) {
    const auto& s = it->get_ref<const std::string&>();
    int64_t v = 0;
    std::from_chars(s.data(), s.data() + s.size(), v);
    return v;
  }
  return 0;
}

// A string field ("" when absent or not a string; json::value would throw).
std::string Str(const json& j, const char* name) {
  auto it = j.find(name);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

bool Bool(const json& j, const char* name) {
  auto it = j.find(name);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}

// A base64 string field decoded (absent means "").
Result<std::string> Bytes(const json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end()) return std::string();
  if (!it->is_string())
    return Status::IOError("etcd reply: bad field " + std::string(name));
  return Base64Decode(it->get_ref<const std::string&>());
}

Result<KeyValue> ParseKv(const json& j) {
  KeyValue kv;
  TRELLIS_ASSIGN_OR_RAISE(kv.key, Bytes(j, "key"));
  TRELLIS_ASSIGN_OR_RAISE(kv.value, Bytes(j, "value"));
  kv.create_revision = Int64(j, "create_revision");
  kv.mod_revision = Int64(j, "mod_revision");
  kv.version = Int64(j, "version");
  kv.lease = Int64(j, "lease");
  return kv;
}

Result<RangeResult> ParseRange(const json& reply) {
  RangeResult out;
  if (auto h = reply.find("header"); h != reply.end() && h->is_object()) {
    out.revision = Int64(*h, "revision");
  }
  out.more = Bool(reply, "more");
  if (auto kvs = reply.find("kvs"); kvs != reply.end() && kvs->is_array()) {
    for (const auto& j : *kvs) {
      TRELLIS_ASSIGN_OR_RAISE(auto kv, ParseKv(j));
      out.kvs.push_back(std::move(kv));
    }
  }
  return out;
}

// A Txn's "compare": the key (base64) has this mod_revision (0: absent).
json ModRevisionIs(const std::string& key_base64, int64_t mod_revision) {
  return json::array({{{"key", key_base64},
                       {"target", "MOD"},
                       {"result", "EQUAL"},
                       {"mod_revision", std::to_string(mod_revision)}}});
}

int64_t HeaderRevision(const json& reply) {
  auto h = reply.find("header");
  return h != reply.end() && h->is_object() ? Int64(*h, "revision") : 0;
}

// The error text of an etcd error reply: {"error": "text" | {"message": ..}}.
std::string ErrorText(const json& reply) {
  auto it = reply.find("message");
  if (it != reply.end() && it->is_string()) return it->get<std::string>();
  it = reply.find("error");
  if (it != reply.end()) {
    if (it->is_string()) return it->get<std::string>();
    if (it->is_object()) return ErrorText(*it);
  }
  return reply.dump();
}

// gRPC status code of an etcd error reply (2 = Unknown when absent).
int GrpcCode(const json& reply) {
  for (const char* name : {"code", "grpc_code"}) {
    auto it = reply.find(name);
    if (it != reply.end() && it->is_number_integer()) return it->get<int>();
  }
  auto e = reply.find("error");
  if (e != reply.end() && e->is_object()) return GrpcCode(*e);
  return 2;
}

Status ErrorFromReply(const std::string& endpoint, const json& reply) {
  std::string msg = "etcd " + endpoint + ": " + ErrorText(reply);
  switch (GrpcCode(reply)) {
    case 3:   // InvalidArgument
    case 9:   // FailedPrecondition
    case 11:  // OutOfRange (e.g. compacted or future revision)
      return Status::Invalid(std::move(msg));
    case 5:  // NotFound (lease)
      return Status::ObjectNotFound(std::move(msg));
    case 4:  // DeadlineExceeded
      return Status::Timeout(std::move(msg));
    case 14:  // Unavailable (no leader, shutting down)
      return Status::Disconnected(std::move(msg));
    default:
      return Status::IOError(std::move(msg));
  }
}

const char kBase64Alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

}  // namespace

// Base64 by hand: the gateway needs it for every key and value, libcurl
// keeps its codec internal, and no maintained Debian C++ library offers one
// (libb64 is unmaintained); the codec is twenty lines.
std::string Base64Encode(const std::string& bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  auto byte = [&](size_t k) { return static_cast<uint8_t>(bytes[k]); };
  for (; i + 2 < bytes.size(); i += 3) {
    uint32_t v = byte(i) << 16 | byte(i + 1) << 8 | byte(i + 2);
    for (int s = 18; s >= 0; s -= 6) out += kBase64Alphabet[(v >> s) & 63];
  }
  size_t rest = bytes.size() - i;
  if (rest > 0) {
    uint32_t v = byte(i) << 16 | (rest == 2 ? byte(i + 1) << 8 : 0);
    out += kBase64Alphabet[(v >> 18) & 63];
    out += kBase64Alphabet[(v >> 12) & 63];
    out += rest == 2 ? kBase64Alphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

Result<std::string> Base64Decode(const std::string& text) {
  if (text.size() % 4 != 0) return Status::Invalid("base64: bad length");
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    uint32_t v = 0;
    int pad = 0;
    for (size_t k = 0; k < 4; ++k) {
      char c = text[i + k];
      uint32_t d = 0;
      if (c == '=' && i + 4 == text.size() && k >= 2) {
        ++pad;
      } else if (pad > 0) {
        return Status::Invalid("base64: data after padding");
      } else if (const char* p = std::strchr(kBase64Alphabet, c); p && c) {
        d = static_cast<uint32_t>(p - kBase64Alphabet);
      } else {
        return Status::Invalid("base64: bad character");
      }
      v = v << 6 | d;
    }
    out += static_cast<char>(v >> 16);
    if (pad < 2) out += static_cast<char>((v >> 8) & 0xff);
    if (pad < 1) out += static_cast<char>(v & 0xff);
  }
  return out;
}

std::string PrefixRangeEnd(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    if (static_cast<uint8_t>(end.back()) < 0xff) {
      end.back() = static_cast<char>(static_cast<uint8_t>(end.back()) + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key
}

// ---------------------------------------------------------------------------
// EtcdClient

// Idle curl handles (each keeps its connections open for reuse) and the
// endpoint that answered last.
struct EtcdClient::Pool {
  ~Pool() {
    for (CURL* h : idle) curl_easy_cleanup(h);
    curl_slist_free_all(headers);
  }
  CURL* Take() {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (!idle.empty()) {
        CURL* h = idle.back();
        idle.pop_back();
        return h;
      }
    }
    CURL* h = curl_easy_init();
    if (h) SetCommonOptions(h, headers);
    return h;
  }
  void Give(CURL* h) {
    std::lock_guard<std::mutex> lock(mu);
    if (idle.size() < kMaxIdle) {
      idle.push_back(h);
      return;
    }
    curl_easy_cleanup(h);
  }
  // One JSON POST to etcd; the error statuses of the class comment.
  Result<json> Call(const EtcdOptions& options, const char* path,
                    const json& body);

  static constexpr size_t kMaxIdle = 8;
  curl_slist* const headers = JsonHeaders();  // read-only once made
  std::atomic<size_t> preferred{0};           // index into endpoints
  std::mutex mu;
  std::vector<CURL*> idle;  // guarded by mu
};

Result<json> EtcdClient::Pool::Call(const EtcdOptions& options,
                                    const char* path, const json& body) {
  const std::string payload = body.dump();
  const auto& eps = options.endpoints;
  const auto deadline = Clock::now() + options.timeout;
  const size_t first = preferred.load();
  std::string reason;
  for (size_t i = 0; i < eps.size(); ++i) {
    const size_t idx = (first + i) % eps.size();
    const std::string& ep = eps[idx];
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - Clock::now());
    if (left.count() <= 0) break;
    CURL* h = Take();
    if (!h) return Status::IOError("etcd: curl_easy_init failed");
    std::string url = ep + path;
    std::string reply;
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, payload.data());
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE,
                     static_cast<long>(payload.size()));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, AppendToString);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &reply);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(left.count()));
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(left.count()));
    CURLcode rc = curl_easy_perform(h);
    long http = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &http);
    Give(h);
    if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST) {
      reason = curl_easy_strerror(rc);  // nothing was sent: try the next one
      continue;
    }
    if (rc == CURLE_OPERATION_TIMEDOUT) {
      return Status::Timeout("etcd " + ep + ": no reply within " +
                             std::to_string(options.timeout.count()) + " ms");
    }
    if (rc != CURLE_OK) {
      return Status::Disconnected("etcd " + ep + ": " + curl_easy_strerror(rc));
    }
    preferred.store(idx);
    json j = json::parse(reply, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) {
      return Status::IOError("etcd " + ep + ": malformed reply (HTTP " +
                             std::to_string(http) +
                             "): " + reply.substr(0, 200));
    }
    if (http != 200) return ErrorFromReply(ep, j);
    return j;
  }
  if (reason.empty()) {
    return Status::Timeout("etcd " + Joined(eps) + ": no reply within " +
                           std::to_string(options.timeout.count()) + " ms");
  }
  return Status::Disconnected("etcd unreachable (" + Joined(eps) +
                              "): " + reason);
}

EtcdClient::EtcdClient(EtcdOptions options)
    : options_(std::move(options)), pool_(std::make_unique<Pool>()) {}

EtcdClient::~EtcdClient() = default;

Result<std::unique_ptr<EtcdClient>> EtcdClient::Make(EtcdOptions options) {
  if (options.endpoints.empty()) {
    return Status::Invalid("etcd: no endpoint given");
  }
  if (options.timeout.count() <= 0) {
    return Status::Invalid("etcd: timeout must be positive");
  }
  for (auto& ep : options.endpoints) {
    if (ep.empty()) return Status::Invalid("etcd: empty endpoint");
    ep = NormalizeEndpoint(ep);
  }
  GlobalInit();
  return std::unique_ptr<EtcdClient>(new EtcdClient(std::move(options)));
}

Result<int64_t> EtcdClient::Put(const std::string& key,
                                const std::string& value, int64_t lease) {
  json body = {{"key", Base64Encode(key)}, {"value", Base64Encode(value)}};
  if (lease != 0) body["lease"] = std::to_string(lease);
  TRELLIS_ASSIGN_OR_RAISE(json reply,
                          pool_->Call(options_, "/v3/kv/put", body));
  return HeaderRevision(reply);
}

Result<std::optional<KeyValue>> EtcdClient::Get(const std::string& key) {
  json body = {{"key", Base64Encode(key)}};
  TRELLIS_ASSIGN_OR_RAISE(json reply,
                          pool_->Call(options_, "/v3/kv/range", body));
  TRELLIS_ASSIGN_OR_RAISE(RangeResult range, ParseRange(reply));
  if (range.kvs.empty()) return std::optional<KeyValue>();
  return std::optional<KeyValue>(std::move(range.kvs.front()));
}

Result<RangeResult> EtcdClient::GetPrefix(const std::string& prefix,
                                          int64_t limit) {
  json body = {
      {"key", Base64Encode(prefix.empty() ? std::string(1, '\0') : prefix)},
      {"range_end", Base64Encode(PrefixRangeEnd(prefix))}};
  if (limit > 0) body["limit"] = std::to_string(limit);
  TRELLIS_ASSIGN_OR_RAISE(json reply,
                          pool_->Call(options_, "/v3/kv/range", body));
  return ParseRange(reply);
}

Result<int64_t> EtcdClient::Delete(const std::string& key) {
  json body = {{"key", Base64Encode(key)}};
  TRELLIS_ASSIGN_OR_RAISE(json reply,
                          pool_->Call(options_, "/v3/kv/deleterange", body));
  return Int64(reply, "deleted");
}

Result<int64_t> EtcdClient::DeletePrefix(const std::string& prefix) {
  json body = {
      {"key", Base64Encode(prefix.empty() ? std::string(1, '\0') : prefix)},
      {"range_end", Base64Encode(PrefixRangeEnd(prefix))}};
  TRELLIS_ASSIGN_OR_RAISE(json reply,
                          pool_->Call(options_, "/v3/kv/deleterange", body));
  return Int64(reply, "deleted");
}

Result<CasResult> EtcdClient::CompareAndSwap(const std::string& key,
                                             int64_t expected_mod_revision,
                                             const std::string& value,
                                             int64_t lease) {
  const std::string k = Base64Encode(key);
  json put = {{"key", k}, {"value", Base64Encode(value)}};
  if (lease != 0) put["lease"] = std::to_string(lease);
  json body = {{"compare", ModRevisionIs(k, expected_mod_revision)},
               {"success", json::array({{{"request_put", put}}})},
               {"failure", json::array({{{"request_range", {{"key", k}}}}})}};
  TRELLIS_ASSIGN_OR_RAISE(json reply,
                          pool_->Call(options_, "/v3/kv/txn", body));
  CasResult out;
  out.swapped = Bool(reply, "succeeded");
  out.revision = HeaderRevision(reply);
  if (!out.swapped) {
    auto responses = reply.find("responses");
    if (responses != reply.end() && responses->is_array() &&
        !responses->empty()) {
      auto range = (*responses)[0].find("response_range");
      if (range != (*responses)[0].end()) {
        TRELLIS_ASSIGN_OR_RAISE(RangeResult r, ParseRange(*range));
        if (!r.kvs.empty()) out.current = std::move(r.kvs.front());
      }
    }
  }
  return out;
}

Result<bool> EtcdClient::PutIfAbsent(const std::string& key,
                                     const std::string& value, int64_t lease) {
  // A key that does not exist has create_revision 0 (and mod_revision 0):
  // the same transaction as CompareAndSwap on 0.
  TRELLIS_ASSIGN_OR_RAISE(CasResult r, CompareAndSwap(key, 0, value, lease));
  return r.swapped;
}

Result<bool> EtcdClient::DeleteIfUnchanged(const std::string& key,
                                           int64_t expected_mod_revision) {
  const std::string k = Base64Encode(key);
  json body = {
      {"compare", ModRevisionIs(k, expected_mod_revision)},
      {"success", json::array({{{"request_delete_range", {{"key", k}}}}})}};
  TRELLIS_ASSIGN_OR_RAISE(json reply,
                          pool_->Call(options_, "/v3/kv/txn", body));
  // A compare on an absent key sees mod_revision 0: never "unchanged" for
  // a revision that was read from an existing key.
  return Bool(reply, "succeeded") && expected_mod_revision > 0;
}

Status EtcdClient::Compact(int64_t revision) {
  json body = {{"revision", std::to_string(revision)}, {"physical", true}};
  return pool_->Call(options_, "/v3/kv/compaction", body).status();
}

Result<int64_t> EtcdClient::LeaseGrant(int64_t ttl_seconds) {
  if (ttl_seconds < 1) return Status::Invalid("etcd: lease TTL must be >= 1 s");
  json body = {{"TTL", std::to_string(ttl_seconds)}};
  TRELLIS_ASSIGN_OR_RAISE(json reply,
                          pool_->Call(options_, "/v3/lease/grant", body));
  int64_t id = Int64(reply, "ID");
  if (id == 0) {
    return Status::IOError("etcd: lease grant returned no id: " +
                           ErrorText(reply));
  }
  return id;
}

Result<int64_t> EtcdClient::LeaseKeepAliveOnce(int64_t lease) {
  // The gateway maps the bidirectional keep-alive stream to one request and
  // one {"result": LeaseKeepAliveResponse}; TTL 0 (omitted) means no lease.
  json body = {{"ID", std::to_string(lease)}};
  TRELLIS_ASSIGN_OR_RAISE(json reply,
                          pool_->Call(options_, "/v3/lease/keepalive", body));
  auto result = reply.find("result");
  if (result == reply.end() || !result->is_object()) {
    if (reply.contains("error")) {
      return ErrorFromReply(options_.endpoints[pool_->preferred.load()], reply);
    }
    return Status::IOError("etcd: malformed keep-alive reply: " + reply.dump());
  }
  int64_t ttl = Int64(*result, "TTL");
  if (ttl <= 0) {
    return Status::ObjectNotFound("etcd: lease " + std::to_string(lease) +
                                  " not found (expired or revoked)");
  }
  return ttl;
}

Status EtcdClient::LeaseRevoke(int64_t lease) {
  json body = {{"ID", std::to_string(lease)}};
  return pool_->Call(options_, "/v3/lease/revoke", body).status();
}

// ---------------------------------------------------------------------------
// EtcdWatch

struct EtcdWatch::Impl {
  ~Impl() {
    if (multi) curl_multi_cleanup(multi);
    curl_slist_free_all(headers);
  }

  // One streaming request to `endpoint`, until it ends or Stop(). Updates
  // `next` as events are delivered.
  void Stream(const std::string& endpoint, std::atomic<int64_t>& next);
  // Handles one line of the stream; false to abort the transfer.
  bool OnLine(const std::string& line, const std::string& endpoint,
              std::atomic<int64_t>& next);
  void Report(WatchState state) {
    if (on_state) on_state(state);
  }

  EtcdOptions options;
  std::string key;        // base64
  std::string range_end;  // base64
  WatchEventsCallback on_events;
  WatchStateCallback on_state;
  CURLM* multi = curl_multi_init();
  curl_slist* const headers = JsonHeaders();

  std::atomic<bool> stop{false};
  std::mutex mu;
  std::condition_variable cv;  // wakes the backoff wait on stop

  // Watch-thread state.
  // The last state reported (kCompacted is never stored), so that an outage
  // is reported once however many reconnections fail.
  std::optional<WatchState::Kind> reported;
  std::string buffer;
  bool created = false;
  int64_t compacted = 0;  // compact_revision of a cancel, else 0
  Status error;           // why the stream ended
};

bool EtcdWatch::Impl::OnLine(const std::string& line,
                             const std::string& endpoint,
                             std::atomic<int64_t>& next) {
  if (line.find_first_not_of(" \r\t") == std::string::npos) return true;
  json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    error = Status::IOError("etcd " + endpoint + ": malformed watch reply");
    return false;
  }
  if (j.contains("error")) {
    error = ErrorFromReply(endpoint, j);
    return false;
  }
  auto rit = j.find("result");
  if (rit == j.end() || !rit->is_object()) return true;
  const json& r = *rit;
  if (Bool(r, "created")) {
    created = true;
    if (next.load() == 0) {
      // Started at "now": the stream's first revision is header + 1.
      if (auto h = r.find("header"); h != r.end() && h->is_object()) {
        next.store(Int64(*h, "revision") + 1);
      }
    }
    if (reported != WatchState::Kind::kConnected) {
      reported = WatchState::Kind::kConnected;
      Report({WatchState::Kind::kConnected, endpoint, Status::OK(), 0});
    }
  }
  if (Bool(r, "canceled")) {
    compacted = Int64(r, "compact_revision");
    std::string why = Str(r, "cancel_reason");
    error = Status::Disconnected("etcd " + endpoint + ": watch canceled" +
                                 (why.empty() ? "" : ": " + why));
    return false;
  }
  auto events = r.find("events");
  if (events == r.end() || !events->is_array() || events->empty()) return true;
  std::vector<WatchEvent> batch;
  int64_t last = 0;
  for (const auto& e : *events) {
    auto kvj = e.find("kv");
    if (kvj == e.end()) continue;
    auto kv = ParseKv(*kvj);
    if (!kv.ok()) {
      error = kv.status();
      return false;
    }
    if (kv->mod_revision < next.load()) continue;  // already delivered
    WatchEvent ev;
    ev.type = Str(e, "type") == "DELETE" ? WatchEvent::Type::kDelete
                                         : WatchEvent::Type::kPut;
    last = std::max(last, kv->mod_revision);
    ev.kv = std::move(*kv);
    batch.push_back(std::move(ev));
  }
  if (batch.empty()) return true;
  on_events(batch);
  next.store(last + 1);
  return true;
}

void EtcdWatch::Impl::Stream(const std::string& endpoint,
                             std::atomic<int64_t>& next) {
  buffer.clear();
  created = false;
  compacted = 0;
  error = Status::OK();
  json create = {{"key", key}, {"range_end", range_end}};
  if (next.load() > 0) create["start_revision"] = std::to_string(next.load());
  const std::string body = json{{"create_request", create}}.dump();
  const std::string url = endpoint + "/v3/watch";

  struct Sink {
    Impl* self;
    const std::string* endpoint;
    std::atomic<int64_t>* next;
  } sink{this, &endpoint, &next};
  auto on_data = +[](char* data, size_t size, size_t n, void* arg) -> size_t {
    auto* s = static_cast<Sink*>(arg);
    Impl* self = s->self;
    if (self->stop.load()) return 0;
    self->buffer.append(data, size * n);
    size_t start = 0;
    for (size_t nl; (nl = self->buffer.find('\n', start)) != std::string::npos;
         start = nl + 1) {
      if (!self->OnLine(self->buffer.substr(start, nl - start), *s->endpoint,
                        *s->next)) {
        return 0;
      }
    }
    self->buffer.erase(0, start);
    return size * n;
  };

  CURL* h = curl_easy_init();
  if (!h) {
    error = Status::IOError("etcd: curl_easy_init failed");
    return;
  }
  SetCommonOptions(h, headers);
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(options.timeout.count()));
  curl_multi_add_handle(multi, h);
  CURLcode rc = CURLE_OK;
  for (;;) {
    int running = 0;
    curl_multi_perform(multi, &running);
    int queued = 0;
    if (CURLMsg* m = curl_multi_info_read(multi, &queued);
        m && m->msg == CURLMSG_DONE) {
      rc = m->data.result;
      break;
    }
    if (stop.load()) break;
    curl_multi_poll(multi, nullptr, 0, 1000, nullptr);  // Stop() wakes it
    if (stop.load()) break;
  }
  long http = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &http);
  curl_multi_remove_handle(multi, h);
  curl_easy_cleanup(h);
  if (!error.ok() || stop.load()) return;
  if (!buffer.empty()) OnLine(buffer, endpoint, next);  // unterminated tail
  if (!error.ok()) return;
  if (rc != CURLE_OK) {
    error = Status::Disconnected("etcd " + endpoint +
                                 ": watch stream: " + curl_easy_strerror(rc));
  } else {
    error = Status::Disconnected("etcd " + endpoint +
                                 ": watch stream ended (HTTP " +
                                 std::to_string(http) + ")");
  }
}

EtcdWatch::EtcdWatch(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

void EtcdWatch::Run() {
  Impl& w = *impl_;
  const auto& eps = w.options.endpoints;
  size_t ep = 0;
  auto backoff = w.options.watch_backoff_min;
  while (!w.stop.load()) {
    w.Stream(eps[ep], next_revision_);
    if (w.stop.load()) break;
    if (w.compacted > 0) {
      // Resume at the oldest revision etcd keeps; the owner resyncs.
      w.Report(
          {WatchState::Kind::kCompacted, eps[ep], Status::OK(), w.compacted});
      next_revision_.store(w.compacted);
      continue;
    }
    if (w.created) backoff = w.options.watch_backoff_min;
    if (w.reported != WatchState::Kind::kDisconnected) {
      w.reported = WatchState::Kind::kDisconnected;
      w.Report({WatchState::Kind::kDisconnected, eps[ep], w.error, 0});
    }
    ep = (ep + 1) % eps.size();
    std::unique_lock<std::mutex> lock(w.mu);
    w.cv.wait_for(lock, backoff, [&] { return w.stop.load(); });
    backoff = std::min(backoff * 2, w.options.watch_backoff_max);
  }
}

void EtcdWatch::Stop() {
  if (!thread_.joinable()) return;
  assert(std::this_thread::get_id() != thread_.get_id() &&
         "EtcdWatch::Stop called from a watch callback");
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stop.store(true);
  }
  impl_->cv.notify_all();
  curl_multi_wakeup(impl_->multi);
  thread_.join();
}

EtcdWatch::~EtcdWatch() { Stop(); }

Result<std::unique_ptr<EtcdWatch>> EtcdClient::Watch(
    const std::string& prefix, int64_t start_revision,
    WatchEventsCallback on_events, WatchStateCallback on_state) {
  if (!on_events) return Status::Invalid("etcd watch: no event callback");
  if (start_revision < 0)
    return Status::Invalid("etcd watch: negative revision");
  auto impl = std::make_unique<EtcdWatch::Impl>();
  if (!impl->multi)
    return Status::IOError("etcd watch: curl_multi_init failed");
  impl->options = options_;
  impl->key = Base64Encode(prefix.empty() ? std::string(1, '\0') : prefix);
  impl->range_end = Base64Encode(PrefixRangeEnd(prefix));
  impl->on_events = std::move(on_events);
  impl->on_state = std::move(on_state);
  std::unique_ptr<EtcdWatch> watch(new EtcdWatch(std::move(impl)));
  watch->next_revision_.store(start_revision);
  watch->thread_ = std::thread([w = watch.get()] { w->Run(); });
  return watch;
}

}  // namespace trellis::etcd
