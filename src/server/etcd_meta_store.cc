#include "server/etcd_meta_store.h"

#include <fnmatch.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <unordered_set>

namespace trellis::server {
namespace {

using json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

constexpr uint64_t kMaxInstanceId = 65535;
// Retries of the next_instance compare-and-swap lost to other registrations.
constexpr int kMaxCasAttempts = 100;

const Status& StatusOf(const Status& st) { return st; }
template <typename T>
const Status& StatusOf(const Result<T>& r) {
  return r.status();
}

std::string Joined(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : ", ") + p;
  return out;
}

bool IsTransportError(const Status& st) {
  return st.IsDisconnected() || st.IsTimeout();
}

// The part of a glob before its first special character: the names that can
// match lie under it.
std::string LiteralPrefix(const std::string& pattern) {
  return pattern.substr(0, pattern.find_first_of("*?[\\"));
}

uint64_t ParseDecimal(const std::string& text, bool* ok) {
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  *ok = ec == std::errc() && end == text.data() + text.size() && !text.empty();
  return v;
}

// A name's value: "o" + 16 hex digits, or a decimal id (cluster-design.md).
Result<ObjectID> ParseId(const std::string& text) {
  if (!text.empty() && text[0] == 'o') return ObjectID::FromString(text);
  bool ok = false;
  uint64_t v = ParseDecimal(text, &ok);
  if (!ok || v == 0) return Status::Invalid("not an object id: '" + text + "'");
  return ObjectID(v);
}

Status NameNotFound(const std::string& name) {
  return Status::ObjectNotFound("name '" + name + "' not found");
}

json InfoToJson(const InstanceInfo& info) {
  return {
      {"instance_id", info.instance_id}, {"hostname", info.hostname},
      {"ipc_socket", info.ipc_socket},   {"rpc_endpoint", info.rpc_endpoint},
      {"arena_size", info.arena_size},   {"arena_used", info.arena_used}};
}

std::optional<InstanceInfo> InfoFromJson(const std::string& text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return std::nullopt;
  auto id = j.find("instance_id");
  if (id == j.end() || !id->is_number_unsigned() || *id == 0 ||
      *id > kMaxInstanceId) {
    return std::nullopt;
  }
  auto str = [&j](const char* k) {
    auto it = j.find(k);
    return it != j.end() && it->is_string() ? it->get<std::string>() : "";
  };
  auto num = [&j](const char* k) -> uint64_t {
    auto it = j.find(k);
    return it != j.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
  };
  InstanceInfo info;
  info.instance_id = id->get<uint16_t>();
  info.hostname = str("hostname");
  info.ipc_socket = str("ipc_socket");
  info.rpc_endpoint = str("rpc_endpoint");
  info.arena_size = num("arena_size");
  info.arena_used = num("arena_used");
  return info;
}

}  // namespace

// Names of deleted objects, gathered while the read of the names waits for
// a worker: one read serves every DropNamesOf queued meanwhile.
struct EtcdMetaStore::DropBatch {
  std::vector<ObjectID> ids;
  std::vector<StatusCallback> dones;
};

Result<std::unique_ptr<EtcdMetaStore>> EtcdMetaStore::Make(
    EtcdMetaStoreOptions options, Post post) {
  if (!post) return Status::Invalid("etcd metadata store: no post function");
  if (options.cluster.empty() ||
      options.cluster.find('/') != std::string::npos) {
    return Status::Invalid("cluster name must be non-empty and without '/': '" +
                           options.cluster + "'");
  }
  if (options.lease_ttl.count() < 1) {
    return Status::Invalid("etcd lease TTL must be at least 1 s");
  }
  if (options.keepalive_interval.count() <= 0 ||
      options.keepalive_interval >= options.lease_ttl) {
    return Status::Invalid(
        "etcd keep-alive interval must be positive and shorter than the "
        "lease TTL");
  }
  if (options.workers == 0) {
    return Status::Invalid("etcd metadata store needs at least one worker");
  }
  etcd::EtcdOptions client_options;
  client_options.endpoints = options.endpoints;
  client_options.timeout = options.timeout;
  client_options.watch_backoff_min = options.watch_backoff_min;
  client_options.watch_backoff_max = options.watch_backoff_max;
  TRELLIS_ASSIGN_OR_RAISE(auto client, etcd::EtcdClient::Make(client_options));
  return std::unique_ptr<EtcdMetaStore>(new EtcdMetaStore(
      std::move(options), std::move(post), std::move(client)));
}

Result<std::unique_ptr<MetaStore>> MakeEtcdMetaStore(
    EtcdMetaStoreOptions options, EtcdMetaStore::Post post) {
  TRELLIS_ASSIGN_OR_RAISE(
      auto store, EtcdMetaStore::Make(std::move(options), std::move(post)));
  return std::unique_ptr<MetaStore>(std::move(store));
}

EtcdMetaStore::EtcdMetaStore(EtcdMetaStoreOptions options, Post post,
                             std::unique_ptr<etcd::EtcdClient> client)
    : options_(std::move(options)),
      post_(std::move(post)),
      client_(std::move(client)),
      prefix_("/trellis/" + options_.cluster + "/"),
      endpoints_text_(Joined(client_->options().endpoints)) {
  for (size_t i = 0; i < options_.workers; ++i) {
    workers_.emplace_back([this] { WorkerLoop(); });
  }
}

EtcdMetaStore::~EtcdMetaStore() {
  *alive_ = false;  // completions already posted are dropped
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  lease_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
  // No worker runs any more, so Register cannot start threads now.
  if (lease_thread_.joinable()) lease_thread_.join();
  if (watch_) watch_->Stop();
  watch_.reset();
  queue_.clear();  // the callbacks of calls never run die here, on the loop
  drop_batch_.reset();
  const int64_t lease = lease_.load();
  if (options_.revoke_on_close && lease != 0 && lease_alive_.load()) {
    Status st = client_->LeaseRevoke(lease);
    if (!st.ok()) {
      spdlog::warn("etcd: could not revoke the lease of instance {}: {}",
                   instance_id_.load(), st.ToString());
    }
  }
}

EtcdMetaStoreStats EtcdMetaStore::stats() const {
  EtcdMetaStoreStats s;
  s.instance_id = instance_id_.load();
  s.lease = lease_.load();
  s.lease_alive = lease_alive_.load();
  s.lease_regrants = lease_regrants_.load();
  s.keepalive_failures = keepalive_failures_.load();
  s.watch_connected = watch_connected_.load();
  s.watch_resyncs = watch_resyncs_.load();
  s.watch_compactions = watch_compactions_.load();
  s.usage_updates = usage_updates_.load();
  return s;
}

std::string EtcdMetaStore::NameKey(const std::string& name) const {
  return prefix_ + "names/" + name;
}
std::string EtcdMetaStore::ObjectKey(ObjectID id) const {
  return prefix_ + "objects/" + id.ToString();
}
std::string EtcdMetaStore::InstanceKey(uint16_t id) const {
  return prefix_ + "instances/" + std::to_string(id);
}

// ------------------------------------------------------------ the workers

Status EtcdMetaStore::Annotated(const std::string& what, const Status& st) {
  if (IsTransportError(st)) {
    std::lock_guard<std::mutex> lock(mu_);
    last_transport_error_ = st;
  }
  if (!IsTransportError(st) && !st.IsIOError()) return st;
  return Status(st.code(), what + ": " + st.message());
}

template <typename R>
void EtcdMetaStore::Submit(std::string what, std::function<R()> work,
                           std::function<void(R)> done) {
  Job job;
  job.deadline = SteadyClock::now() + options_.timeout;
  job.run = [this, what = std::move(what), work = std::move(work),
             done = std::move(done)](const Status* late) mutable {
    R result = late ? R(Annotated(what, *late)) : work();
    if (!late) {
      if (StatusOf(result).ok()) {
        std::lock_guard<std::mutex> lock(mu_);
        last_transport_error_ = Status::OK();
      } else {
        result = R(Annotated(what, StatusOf(result)));
      }
    }
    return Completion(
        [done = std::move(done), result = std::move(result)]() mutable {
          done(std::move(result));
        });
  };
  Enqueue(std::move(job));
}

void EtcdMetaStore::Enqueue(Job job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(job));
  }
  work_cv_.notify_one();
}

void EtcdMetaStore::WorkerLoop() {
  for (;;) {
    Job job;
    Status late;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      job = std::move(queue_.front());
      queue_.pop_front();
      if (SteadyClock::now() > job.deadline) {
        // Queued behind calls that took their whole timeout: etcd hangs or
        // is gone. Answer now rather than add another timeout.
        const std::string waited = " (the call waited " +
                                   std::to_string(options_.timeout.count()) +
                                   " ms behind earlier ones and was not sent)";
        late = last_transport_error_.ok()
                   ? Status::Timeout("etcd (" + endpoints_text_ +
                                     ") is not answering" + waited)
                   : Status(last_transport_error_.code(),
                            last_transport_error_.message() + waited);
      }
    }
    PostToLoop(job.run(late.ok() ? nullptr : &late));
  }
}

void EtcdMetaStore::PostToLoop(Completion fn) {
  post_([alive = alive_, fn = std::move(fn)] {
    if (*alive) fn();
  });
}

// ----------------------------------------------------------- registration

void EtcdMetaStore::Register(InstanceInfo self, Callback<uint16_t> done) {
  if (register_called_) {
    return done(Status::Invalid("etcd metadata store: Register called twice"));
  }
  register_called_ = true;
  Submit<Result<uint16_t>>(
      "cannot join cluster '" + options_.cluster + "'",
      [this, self = std::move(self)] { return DoRegister(self); },
      std::move(done));
}

Result<uint16_t> EtcdMetaStore::AllocateInstanceId() {
  const std::string key = prefix_ + "next_instance";
  TRELLIS_ASSIGN_OR_RAISE(std::optional<etcd::KeyValue> current,
                          client_->Get(key));
  for (int attempt = 0; attempt < kMaxCasAttempts; ++attempt) {
    uint64_t next = 1;
    if (current) {
      bool ok = false;
      next = ParseDecimal(current->value, &ok);
      if (!ok || next == 0) {
        return Status::IOError("etcd key " + key + " holds '" + current->value +
                               "', not an instance id");
      }
    }
    if (next > kMaxInstanceId) {
      return Status::Invalid(
          "cluster '" + options_.cluster +
          "' has handed out all 65535 instance ids (ids are never reused: "
          "they are part of every object id); use another --cluster name, "
          "or delete " +
          key + " once no object of an earlier instance is in use");
    }
    TRELLIS_ASSIGN_OR_RAISE(
        etcd::CasResult cas,
        client_->CompareAndSwap(key, current ? current->mod_revision : 0,
                                std::to_string(next + 1)));
    if (cas.swapped) return static_cast<uint16_t>(next);
    current = std::move(cas.current);  // another instance took `next`
  }
  return Status::IOError("etcd: could not take an instance id from " + key +
                         ": lost the race " + std::to_string(kMaxCasAttempts) +
                         " times");
}

Result<uint16_t> EtcdMetaStore::DoRegister(InstanceInfo self) {
  TRELLIS_ASSIGN_OR_RAISE(uint16_t id, AllocateInstanceId());
  self.instance_id = id;
  self.arena_used = arena_used_.load();
  TRELLIS_ASSIGN_OR_RAISE(int64_t lease,
                          client_->LeaseGrant(options_.lease_ttl.count()));
  const std::string key = InstanceKey(id);
  TRELLIS_ASSIGN_OR_RAISE(
      etcd::CasResult put,
      client_->CompareAndSwap(key, 0, InfoToJson(self).dump(), lease));
  if (!put.swapped) {  // only if someone wrote it by hand
    (void)client_->LeaseRevoke(lease);
    return Status::IOError("etcd key " + key + " exists already");
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (stop_) return Status::Disconnected("the metadata store is closing");
  self_ = self;
  published_used_ = self.arena_used;
  last_usage_put_ = SteadyClock::now();
  instance_id_.store(id);
  lease_.store(lease);
  lease_alive_.store(true);
  // From the revision after our registration on: no binding made after
  // this call returns is missed.
  StartWatch(put.revision + 1);
  lease_thread_ = std::thread([this] { LeaseLoop(); });
  spdlog::info("etcd: instance {} joined cluster '{}' at {} (lease {}, {} s)",
               id, options_.cluster, endpoints_text_, lease,
               options_.lease_ttl.count());
  return id;
}

void EtcdMetaStore::UpdateUsage(uint64_t arena_used) {
  arena_used_.store(arena_used);
}

// ------------------------------------------------------------- the lease

void EtcdMetaStore::LeaseLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    lease_cv_.wait_for(lock, options_.keepalive_interval,
                       [this] { return stop_; });
    if (stop_) return;
    lock.unlock();
    LeaseTick();
    lock.lock();
  }
}

std::string EtcdMetaStore::InstanceJson() {
  self_.arena_used = arena_used_.load();
  return InfoToJson(self_).dump();
}

void EtcdMetaStore::LeaseTick() {
  const uint16_t id = instance_id_.load();
  auto failed = [this, id](const Status& st) {
    keepalive_failures_.fetch_add(1);
    if (lease_alive_.exchange(false)) {
      spdlog::warn(
          "etcd: keep-alive of instance {} failed: {}; it drops out of "
          "cluster '{}' if this lasts {} s, and registers again when etcd "
          "answers",
          id, st.ToString(), options_.cluster, options_.lease_ttl.count());
    }
  };
  if (!needs_lease_ && !needs_put_) {
    auto ttl = client_->LeaseKeepAliveOnce(lease_.load());
    if (ttl.ok()) {
      if (!lease_alive_.exchange(true)) {
        spdlog::info("etcd: keep-alives of instance {} succeed again", id);
      }
      // The arena use, now and then.
      const uint64_t used = arena_used_.load();
      const auto now = SteadyClock::now();
      if (used == published_used_ ||
          now - last_usage_put_ < options_.usage_interval) {
        return;
      }
      auto put = client_->Put(InstanceKey(id), InstanceJson(), lease_.load());
      if (!put.ok()) {
        if (put.status().IsObjectNotFound()) needs_lease_ = true;
        return failed(put.status());
      }
      published_used_ = used;
      last_usage_put_ = now;
      usage_updates_.fetch_add(1);
      return;
    }
    if (!ttl.status().IsObjectNotFound()) return failed(ttl.status());
    spdlog::warn(
        "etcd: the lease of instance {} is gone (etcd did not hear from it "
        "for {} s); registering again with the same id",
        id, options_.lease_ttl.count());
    needs_lease_ = true;
  }
  if (needs_lease_) {
    auto lease = client_->LeaseGrant(options_.lease_ttl.count());
    if (!lease.ok()) return failed(lease.status());
    lease_.store(*lease);
    needs_lease_ = false;
    needs_put_ = true;
  }
  // The id is ours for good (ids are never reused): a plain put.
  auto put = client_->Put(InstanceKey(id), InstanceJson(), lease_.load());
  if (!put.ok()) {
    if (put.status().IsObjectNotFound()) needs_lease_ = true;
    return failed(put.status());
  }
  needs_put_ = false;
  published_used_ = self_.arena_used;
  last_usage_put_ = SteadyClock::now();
  lease_regrants_.fetch_add(1);
  lease_alive_.store(true);
  spdlog::info("etcd: instance {} registered again in cluster '{}' (lease {})",
               id, options_.cluster, lease_.load());
}

// ------------------------------------------------------------ the watch

void EtcdMetaStore::StartWatch(int64_t start_revision) {
  auto watch = client_->Watch(
      prefix_ + "names/", start_revision,
      [this](const std::vector<etcd::WatchEvent>& events) {
        OnNameEvents(events);
      },
      [this](const etcd::WatchState& state) { OnWatchState(state); });
  if (!watch.ok()) {  // only for arguments we never pass
    spdlog::error("etcd: cannot watch names: {}", watch.status().ToString());
    return;
  }
  watch_ = std::move(*watch);
}

void EtcdMetaStore::OnNameEvents(const std::vector<etcd::WatchEvent>& events) {
  if (resync_pending_.load()) Resync();
  const size_t skip = prefix_.size() + 6;  // "names/"
  NameList bound;
  for (const etcd::WatchEvent& e : events) {
    if (e.type != etcd::WatchEvent::Type::kPut) continue;
    auto id = ParseId(e.kv.value);
    if (!id.ok()) continue;  // not ours to interpret
    bound.emplace_back(e.kv.key.substr(skip), *id);
  }
  if (!bound.empty()) PostNames(std::move(bound));
}

void EtcdMetaStore::OnWatchState(const etcd::WatchState& state) {
  switch (state.kind) {
    case etcd::WatchState::Kind::kDisconnected:
      watch_connected_.store(false);
      watch_was_disconnected_.store(true);
      spdlog::warn("etcd: the name watch of cluster '{}' is down: {}",
                   options_.cluster, state.error.ToString());
      break;
    case etcd::WatchState::Kind::kConnected:
      // The stream resumes at the revision after the last one delivered:
      // bindings made while it was down are replayed now, in order.
      watch_connected_.store(true);
      if (watch_was_disconnected_.exchange(false)) {
        spdlog::info("etcd: the name watch of cluster '{}' resumed at {}",
                     options_.cluster, state.endpoint);
      }
      if (resync_pending_.load()) Resync();
      break;
    case etcd::WatchState::Kind::kCompacted:
      watch_compactions_.fetch_add(1);
      resync_pending_.store(true);
      spdlog::warn(
          "etcd: names history compacted up to revision {} while the watch "
          "was away; re-reading every name",
          state.compact_revision);
      Resync();
      break;
  }
}

void EtcdMetaStore::Resync() {
  const std::string names = prefix_ + "names/";
  auto range = client_->GetPrefix(names);
  if (!range.ok()) {
    // etcd went away again: tried again once the watch hears from it.
    spdlog::warn("etcd: cannot re-read the names: {}",
                 range.status().ToString());
    return;
  }
  resync_pending_.store(false);
  NameList bound;
  for (const etcd::KeyValue& kv : range->kvs) {
    auto id = ParseId(kv.value);
    if (id.ok()) bound.emplace_back(kv.key.substr(names.size()), *id);
  }
  watch_resyncs_.fetch_add(1);
  if (!bound.empty()) PostNames(std::move(bound));
}

void EtcdMetaStore::PostNames(NameList names) {
  PostToLoop([this, names = std::move(names)] {
    const uint16_t self = instance_id_.load();
    for (const auto& [name, id] : names) {
      if (id.instance_id() == self) named_.insert(id);
      NotifyNameBound(name, id);
    }
  });
}

// ------------------------------------------------------------- names

void EtcdMetaStore::PutName(const std::string& name, ObjectID id,
                            bool overwrite, StatusCallback done) {
  if (name.empty()) return done(Status::Invalid("a name must not be empty"));
  named_.insert(id);  // now: a put that times out may still have been made
  Submit<Status>(
      "cannot bind name '" + name + "'",
      [this, key = NameKey(name), name, id, overwrite]() -> Status {
        if (overwrite) return client_->Put(key, id.ToString()).status();
        TRELLIS_ASSIGN_OR_RAISE(etcd::CasResult cas,
                                client_->CompareAndSwap(key, 0, id.ToString()));
        if (!cas.swapped) {
          return Status::ObjectExists(
              "name '" + name + "' is bound to " +
              (cas.current ? cas.current->value : std::string("an object")));
        }
        return Status::OK();
      },
      [this, name, id, done = std::move(done)](Status st) {
        // Waiters on this daemon need not wait for the watch.
        if (st.ok()) NotifyNameBound(name, id);
        done(std::move(st));
      });
}

void EtcdMetaStore::GetName(const std::string& name, Callback<ObjectID> done) {
  if (name.empty()) return done(NameNotFound(name));
  Submit<Result<ObjectID>>(
      "cannot look up name '" + name + "'",
      [this, key = NameKey(name), name]() -> Result<ObjectID> {
        TRELLIS_ASSIGN_OR_RAISE(std::optional<etcd::KeyValue> kv,
                                client_->Get(key));
        if (!kv) return NameNotFound(name);
        auto id = ParseId(kv->value);
        if (!id.ok()) {
          return Status::IOError("etcd key " + key + " holds '" + kv->value +
                                 "', not an object id");
        }
        return *id;
      },
      std::move(done));
}

void EtcdMetaStore::DropName(const std::string& name, StatusCallback done) {
  if (name.empty()) return done(NameNotFound(name));
  Submit<Status>(
      "cannot drop name '" + name + "'",
      [this, key = NameKey(name), name]() -> Status {
        TRELLIS_ASSIGN_OR_RAISE(int64_t deleted, client_->Delete(key));
        return deleted > 0 ? Status::OK() : NameNotFound(name);
      },
      std::move(done));
}

void EtcdMetaStore::ListNames(const std::string& pattern, size_t limit,
                              Callback<NameList> done) {
  Submit<Result<NameList>>(
      "cannot list names",
      [this, pattern, limit]() -> Result<NameList> {
        const std::string names = prefix_ + "names/";
        TRELLIS_ASSIGN_OR_RAISE(
            etcd::RangeResult range,
            client_->GetPrefix(names + LiteralPrefix(pattern)));
        NameList out;  // etcd returns keys in byte order: sorted
        for (const etcd::KeyValue& kv : range.kvs) {
          if (out.size() >= limit) break;
          std::string name = kv.key.substr(names.size());
          if (fnmatch(pattern.c_str(), name.c_str(), 0) != 0) continue;
          auto id = ParseId(kv.value);
          if (!id.ok()) continue;  // not a binding of ours
          out.emplace_back(std::move(name), *id);
        }
        return out;
      },
      std::move(done));
}

void EtcdMetaStore::DropNamesOf(ObjectID id, StatusCallback done) {
  if (named_.count(id) == 0) return done(Status::OK());
  done = [this, id, done = std::move(done)](Status st) {
    if (st.ok()) named_.erase(id);
    done(std::move(st));
  };
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (drop_batch_) {  // a read of the names is queued: join it
      drop_batch_->ids.push_back(id);
      drop_batch_->dones.push_back(std::move(done));
      return;
    }
    drop_batch_ = std::make_shared<DropBatch>();
    drop_batch_->ids.push_back(id);
    drop_batch_->dones.push_back(std::move(done));
  }
  Job job;
  job.deadline = SteadyClock::now() + options_.timeout;
  job.run = [this](const Status* late) -> Completion {
    std::shared_ptr<DropBatch> batch;
    {
      std::lock_guard<std::mutex> lock(mu_);
      batch = std::move(drop_batch_);  // later calls start a new batch
    }
    Status st = late ? *late : Status::OK();
    if (!late) {
      std::unordered_set<ObjectID> ids(batch->ids.begin(), batch->ids.end());
      auto range = client_->GetPrefix(prefix_ + "names/");
      st = range.status();
      for (size_t i = 0; st.ok() && i < range->kvs.size(); ++i) {
        const etcd::KeyValue& kv = range->kvs[i];
        auto bound = ParseId(kv.value);
        if (!bound.ok() || ids.count(*bound) == 0) continue;
        // Rebound since the read: not ours to drop any more.
        st = client_->DeleteIfUnchanged(kv.key, kv.mod_revision).status();
      }
    }
    if (!st.ok()) {
      st = Annotated(
          "cannot drop the names of " + batch->ids.front().ToString() +
              (batch->ids.size() > 1
                   ? " and " + std::to_string(batch->ids.size() - 1) +
                         " other deleted object(s)"
                   : ""),
          st);
    }
    return [batch, st] {
      for (const StatusCallback& d : batch->dones) d(st);
    };
  };
  Enqueue(std::move(job));
}

// ------------------------------------------------------ published trees

void EtcdMetaStore::Publish(ObjectID id, const nlohmann::json& tree,
                            StatusCallback done) {
  published_.insert(id);  // now: a put that times out may still have been made
  Submit<Status>(
      "cannot publish " + id.ToString(),
      [this, key = ObjectKey(id), text = tree.dump()]() -> Status {
        return client_->Put(key, text).status();
      },
      std::move(done));
}

void EtcdMetaStore::Unpublish(ObjectID id, StatusCallback done) {
  if (published_.count(id) == 0) return done(Status::OK());
  DeleteTree(id, "cannot withdraw the published tree of ", std::move(done));
}

void EtcdMetaStore::UnpublishGlobal(ObjectID id, StatusCallback done) {
  DeleteTree(id, "cannot withdraw the global object ", std::move(done));
}

void EtcdMetaStore::DeleteTree(ObjectID id, const std::string& failure,
                               StatusCallback done) {
  Submit<Status>(
      failure + id.ToString(),
      [this, key = ObjectKey(id)]() -> Status {
        return client_->Delete(key).status();
      },
      [this, id, done = std::move(done)](Status st) {
        if (st.ok()) published_.erase(id);
        done(std::move(st));
      });
}

void EtcdMetaStore::GetPublished(ObjectID id, Callback<nlohmann::json> done) {
  Submit<Result<json>>(
      "cannot read the published tree of " + id.ToString(),
      [this, key = ObjectKey(id), id]() -> Result<json> {
        TRELLIS_ASSIGN_OR_RAISE(std::optional<etcd::KeyValue> kv,
                                client_->Get(key));
        if (!kv) {
          return Status::ObjectNotFound("object " + id.ToString() +
                                        " is not published");
        }
        json tree = json::parse(kv->value, nullptr, /*allow_exceptions=*/false);
        if (tree.is_discarded()) {
          return Status::IOError("etcd key " + key + " holds no JSON tree");
        }
        return tree;
      },
      std::move(done));
}

// ------------------------------------------------------------ members

void EtcdMetaStore::ListInstances(Callback<std::vector<InstanceInfo>> done) {
  Submit<Result<std::vector<InstanceInfo>>>(
      "cannot list the members of cluster '" + options_.cluster + "'",
      [this]() -> Result<std::vector<InstanceInfo>> {
        TRELLIS_ASSIGN_OR_RAISE(etcd::RangeResult range,
                                client_->GetPrefix(prefix_ + "instances/"));
        std::vector<InstanceInfo> out;
        for (const etcd::KeyValue& kv : range.kvs) {
          auto info = InfoFromJson(kv.value);
          if (!info) {
            spdlog::warn("etcd: ignoring malformed member key {}", kv.key);
            continue;
          }
          out.push_back(std::move(*info));
        }
        std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
          return a.instance_id < b.instance_id;
        });
        return out;
      },
      std::move(done));
}

}  // namespace trellis::server
