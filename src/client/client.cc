#include "trellis/client.h"

#include <sched.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "client/client_core.h"
#include "common/socket_path.h"

namespace trellis {

using protocol::json;
using protocol::MessageType;

// ---------------------------------------------------------------- ClientCore

Result<std::shared_ptr<ClientCore>> ClientCore::Connect(
    const std::string& path) {
  if (path.size() >= sizeof(sockaddr_un::sun_path)) {
    return Status::Invalid("socket path is too long: " + path);
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::FromErrno("socket", errno);
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  if (connect(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)) !=
      0) {
    int err = errno;
    close(fd);
    return Status::Disconnected("no trellis daemon serves " + path + ": " +
                                std::strerror(err));
  }
  std::shared_ptr<ClientCore> core(new ClientCore());
  core->path_ = path;
  core->fd_ = fd;

  std::lock_guard<std::mutex> lock(core->io_mutex_);
  TRELLIS_RETURN_NOT_OK(core->WriteAll(protocol::EncodeFrame(
      MessageType::kHello, json{{"version", protocol::kProtocolVersion}})));
  // The Hello reply carries the arena fd; receive it with the first bytes.
  int arena_fd = -1;
  while (true) {
    auto frame = core->decoder_.Next();
    if (!frame.ok()) return frame.status();
    if (frame->has_value()) {
      protocol::Frame& f = **frame;
      if (f.type == static_cast<uint16_t>(MessageType::kError)) {
        if (arena_fd >= 0) close(arena_fd);
        return protocol::StatusFromErrorBody(f.body);
      }
      if (arena_fd < 0) {
        return Status::Invalid("daemon did not pass the arena descriptor");
      }
      auto size = protocol::GetUint(f.body, "arena_size");
      auto instance = protocol::GetUint(f.body, "instance_id");
      auto max_inline = protocol::GetUint(f.body, "max_inline_blob");
      if (!size.ok() || !instance.ok() || !max_inline.ok()) {
        close(arena_fd);
        return Status::Invalid("malformed Hello reply from daemon");
      }
      void* base =
          mmap(nullptr, *size, PROT_READ | PROT_WRITE, MAP_SHARED, arena_fd, 0);
      int err = errno;
      close(arena_fd);
      if (base == MAP_FAILED) return Status::FromErrno("mmap arena", err);
      core->base_ = static_cast<uint8_t*>(base);
      core->size_ = *size;
      core->instance_id_ = static_cast<uint16_t>(*instance);
      core->max_inline_blob_ = *max_inline;
      return core;
    }
    uint8_t buffer[4096];
    struct iovec iov = {buffer, sizeof(buffer)};
    alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    struct msghdr msg = {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    ssize_t n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (arena_fd >= 0) close(arena_fd);
      return Status::Disconnected("daemon at " + path +
                                  " closed the connection during Hello");
    }
    for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        std::memcpy(&arena_fd, CMSG_DATA(c), sizeof(int));
      }
    }
    core->decoder_.Feed(buffer, static_cast<size_t>(n));
  }
}

ClientCore::~ClientCore() {
  Close();
  if (base_) munmap(base_, size_);
}

Status ClientCore::WriteAll(const std::vector<uint8_t>& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n =
        send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      CloseLocked();
      return Status::Disconnected("lost the daemon at " + path_ + ": " +
                                  std::strerror(err));
    }
    done += static_cast<size_t>(n);
  }
  return Status::OK();
}

Result<protocol::Frame> ClientCore::ReadFrame() {
  TRELLIS_ASSIGN_OR_RAISE(protocol::FrameDecoder::RawFrame raw, ReadRawFrame());
  auto body = protocol::DecodeBody(raw.body, raw.size);
  if (!body.ok()) {
    CloseLocked();
    return body.status();
  }
  return protocol::Frame{raw.type, std::move(body).value()};
}

ssize_t ClientCore::ReceiveSoon(uint8_t* buffer, size_t size) {
  // Most replies arrive within a few microseconds, and a get whose daemon
  // and client code are out of cache (the first after a large copy) within
  // a few hundred. Polling for that long saves this thread from being put
  // to sleep and woken again, which on a virtual machine with idle CPUs
  // costs more than the request itself (bench/results/store_bench.md).
  // Each failed poll yields, so a polling client never keeps the daemon (or
  // anything else runnable) off a CPU. After the spin it blocks as usual.
  constexpr auto kSpin = std::chrono::microseconds(300);
  auto deadline = std::chrono::steady_clock::now() + kSpin;
  do {
    ssize_t n = recv(fd_, buffer, size, MSG_DONTWAIT);
    if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) return n;
    sched_yield();
  } while (std::chrono::steady_clock::now() < deadline);
  return recv(fd_, buffer, size, 0);
}

Result<protocol::FrameDecoder::RawFrame> ClientCore::ReadRawFrame() {
  while (true) {
    auto frame = decoder_.NextRaw();
    if (!frame.ok()) {
      CloseLocked();
      return frame.status();
    }
    if (frame->has_value()) return **frame;
    uint8_t buffer[64 * 1024];
    ssize_t n = ReceiveSoon(buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      CloseLocked();
      return Status::Disconnected("the daemon at " + path_ +
                                  " closed the connection");
    }
    decoder_.Feed(buffer, static_cast<size_t>(n));
  }
}

Status ClientCore::SendRequest(MessageType type, const json& body) {
  if (fd_ < 0) return Status::Disconnected("client is closed");
  out_.clear();
  AppendQueuedReleases(&out_);  // queued releases travel with the request
  protocol::AppendFrame(type, body, &out_);
  return WriteAll(out_);
}

Result<json> ClientCore::Call(MessageType type, const json& body) {
  std::lock_guard<std::mutex> lock(io_mutex_);
  TRELLIS_RETURN_NOT_OK(SendRequest(type, body));
  TRELLIS_ASSIGN_OR_RAISE(protocol::Frame reply, ReadFrame());
  FlushQueuedReleases();
  if (reply.type == static_cast<uint16_t>(MessageType::kError)) {
    return protocol::StatusFromErrorBody(reply.body);
  }
  if (reply.type != static_cast<uint16_t>(MessageType::kReply)) {
    CloseLocked();
    return Status::Invalid("unexpected reply type " +
                           protocol::MessageTypeName(reply.type));
  }
  return std::move(reply.body);
}

Result<std::vector<uint8_t>> ClientCore::CallRaw(MessageType type,
                                                 const json& body) {
  std::lock_guard<std::mutex> lock(io_mutex_);
  TRELLIS_RETURN_NOT_OK(SendRequest(type, body));
  TRELLIS_ASSIGN_OR_RAISE(protocol::FrameDecoder::RawFrame reply,
                          ReadRawFrame());
  std::vector<uint8_t> bytes(reply.body, reply.body + reply.size);
  FlushQueuedReleases();
  if (reply.type == static_cast<uint16_t>(MessageType::kError)) {
    auto error = protocol::DecodeBody(bytes.data(), bytes.size());
    if (!error.ok()) {
      CloseLocked();
      return error.status();
    }
    return protocol::StatusFromErrorBody(*error);
  }
  if (reply.type != static_cast<uint16_t>(MessageType::kReply)) {
    CloseLocked();
    return Status::Invalid("unexpected reply type " +
                           protocol::MessageTypeName(reply.type));
  }
  return bytes;
}

void ClientCore::AppendQueuedReleases(std::vector<uint8_t>* out) {
  std::vector<ObjectID> ids;
  {
    std::lock_guard<std::mutex> lock(release_mutex_);
    ids.swap(queued_releases_);
  }
  if (!ids.empty()) {
    protocol::AppendFrame(MessageType::kRelease, protocol::IdsBody(ids), out);
  }
}

void ClientCore::FlushQueuedReleases() {
  if (fd_ < 0) return;
  std::vector<uint8_t> out;
  AppendQueuedReleases(&out);
  if (!out.empty()) (void)WriteAll(out);
}

void ClientCore::Release(std::vector<ObjectID> ids) {
  if (ids.empty()) return;
  {
    std::lock_guard<std::mutex> lock(release_mutex_);
    queued_releases_.insert(queued_releases_.end(), ids.begin(), ids.end());
  }
  std::unique_lock<std::mutex> io(io_mutex_, std::try_to_lock);
  if (io.owns_lock()) FlushQueuedReleases();
}

void ClientCore::Close() {
  std::lock_guard<std::mutex> lock(io_mutex_);
  FlushQueuedReleases();
  CloseLocked();
}

void ClientCore::CloseLocked() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

void ClientCore::AddOpenBlob(ObjectID id) {
  std::lock_guard<std::mutex> lock(blobs_mutex_);
  open_blobs_.insert(id);
}

bool ClientCore::TakeOpenBlob(ObjectID id) {
  std::lock_guard<std::mutex> lock(blobs_mutex_);
  return open_blobs_.erase(id) > 0;
}

bool ClientCore::IsOpenBlob(ObjectID id) {
  std::lock_guard<std::mutex> lock(blobs_mutex_);
  return open_blobs_.count(id) > 0;
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14
#endif

void ClientCore::PrepareWrite(uint64_t offset, uint64_t size) {
  constexpr uint64_t kGranule = 64 * 1024;
  if (size == 0 || offset >= size_) return;
  uint64_t first = offset / kGranule;
  uint64_t last = (std::min(offset + size, size_) - 1) / kGranule;
  std::lock_guard<std::mutex> lock(populate_mutex_);
  if (!populate_works_) return;
  if (populated_.empty()) populated_.resize((size_ / kGranule + 64) / 64);
  auto done = [&](uint64_t g) { return populated_[g / 64] >> (g % 64) & 1; };
  for (uint64_t g = first; g <= last;) {
    if (done(g)) {
      ++g;
      continue;
    }
    uint64_t end = g;  // one madvise per run of granules not yet populated
    while (end + 1 <= last && !done(end + 1)) ++end;
    uint64_t begin_byte = g * kGranule;
    uint64_t end_byte = std::min((end + 1) * kGranule, size_);
    if (madvise(base_ + begin_byte, end_byte - begin_byte,
                MADV_POPULATE_WRITE) != 0) {
      if (errno == EINVAL) populate_works_ = false;  // kernel without it
      return;
    }
    for (uint64_t i = g; i <= end; ++i) populated_[i / 64] |= 1ull << (i % 64);
    g = end + 1;
  }
}

// ---------------------------------------------------------------- BlobWriter

namespace {
constexpr uint64_t kPrepareWriteThreshold = 1 << 20;
}  // namespace

BlobWriter::BlobWriter(std::shared_ptr<ClientCore> core, ObjectID id,
                       uint8_t* data, uint64_t size)
    : core_(std::move(core)), id_(id), data_(data), size_(size) {}

BlobWriter::~BlobWriter() { (void)Abort(); }

Result<ObjectID> BlobWriter::Seal() {
  if (!core_->TakeOpenBlob(id_)) {
    return Status::Invalid("blob " + id_.ToString() +
                           " is no longer open (already sealed or aborted)");
  }
  auto reply = core_->Call(MessageType::kSeal, protocol::IdsBody({id_}));
  if (!reply.ok()) return reply.status();
  return id_;
}

Status BlobWriter::Abort() {
  if (!core_->TakeOpenBlob(id_)) return Status::OK();
  auto reply = core_->Call(MessageType::kAbort, protocol::IdsBody({id_}));
  return reply.ok() ? Status::OK() : reply.status();
}

// -------------------------------------------------------------------- Client

Client::Client(std::shared_ptr<ClientCore> core) : core_(std::move(core)) {}

Client::~Client() { Close(); }

Result<std::unique_ptr<Client>> Client::Connect(const std::string& socket) {
  TRELLIS_ASSIGN_OR_RAISE(
      auto core,
      ClientCore::Connect(socket.empty() ? DefaultSocketPath() : socket));
  return std::unique_ptr<Client>(new Client(std::move(core)));
}

void Client::Close() { core_->Close(); }

Result<std::unique_ptr<BlobWriter>> Client::CreateBlob(uint64_t size) {
  TRELLIS_ASSIGN_OR_RAISE(auto writers, CreateBlobs({size}));
  return std::move(writers[0]);
}

Result<std::vector<std::unique_ptr<BlobWriter>>> Client::CreateBlobs(
    const std::vector<uint64_t>& sizes) {
  TRELLIS_ASSIGN_OR_RAISE(json reply, core_->Call(MessageType::kCreateBlobs,
                                                  json{{"sizes", sizes}}));
  TRELLIS_ASSIGN_OR_RAISE(std::vector<ObjectID> ids,
                          protocol::GetIds(reply, "ids"));
  TRELLIS_ASSIGN_OR_RAISE(std::vector<uint64_t> offsets,
                          protocol::GetUints(reply, "offsets"));
  if (ids.size() != sizes.size() || offsets.size() != sizes.size()) {
    return trellis::Status::Invalid("malformed CreateBlobs reply");
  }
  std::vector<std::unique_ptr<BlobWriter>> writers;
  for (size_t i = 0; i < ids.size(); ++i) {
    // A writer is for writing the whole blob: map its pages now, in bulk.
    // Small blobs are left to fault (a few pages, and granules of other
    // blobs would be populated needlessly).
    if (sizes[i] >= kPrepareWriteThreshold) {
      core_->PrepareWrite(offsets[i], sizes[i]);
    }
    core_->AddOpenBlob(ids[i]);
    writers.push_back(std::make_unique<BlobWriter>(
        core_, ids[i], core_->base() + offsets[i], sizes[i]));
  }
  return writers;
}

Result<ObjectID> Client::PutBlob(const void* data, uint64_t size) {
  // Inline payloads save a round trip; beyond a few pages, writing straight
  // into the arena is cheaper than pushing the bytes through the socket.
  constexpr uint64_t kInlineThreshold = 64 * 1024;
  if (size <= kInlineThreshold && size <= core_->max_inline_blob()) {
    TRELLIS_ASSIGN_OR_RAISE(auto ids, PutBlobs({{data, size}}));
    return ids[0];
  }
  TRELLIS_ASSIGN_OR_RAISE(auto writer, CreateBlob(size));
  ParallelMemcpy(writer->data(), data, size);
  return writer->Seal();
}

Result<std::vector<ObjectID>> Client::PutBlobs(
    const std::vector<std::pair<const void*, uint64_t>>& payloads) {
  json data = json::array();
  for (const auto& [ptr, size] : payloads) {
    if (size > core_->max_inline_blob()) {
      return trellis::Status::Invalid("PutBlobs payload of " +
                                      std::to_string(size) +
                                      " bytes exceeds the inline limit of " +
                                      std::to_string(core_->max_inline_blob()) +
                                      "; use PutBlob or CreateBlob");
    }
    const auto* bytes = static_cast<const uint8_t*>(ptr);
    data.push_back(json::binary(std::vector<uint8_t>(bytes, bytes + size)));
  }
  TRELLIS_ASSIGN_OR_RAISE(
      json reply, core_->Call(MessageType::kPutBlobs, json{{"data", data}}));
  return protocol::GetIds(reply, "ids");
}

Result<Blob> Client::GetBlob(ObjectID id) {
  TRELLIS_ASSIGN_OR_RAISE(auto blobs, GetBlobs({id}));
  return blobs[0];
}

Result<std::vector<Blob>> Client::GetBlobs(const std::vector<ObjectID>& ids) {
  TRELLIS_ASSIGN_OR_RAISE(
      json reply, core_->Call(MessageType::kGetBlobs, protocol::IdsBody(ids)));
  auto offsets = protocol::GetUints(reply, "offsets");
  auto sizes = protocol::GetUints(reply, "sizes");
  auto lease = std::make_shared<ClientLease>(core_, ids);
  if (!offsets.ok() || !sizes.ok() || offsets->size() != ids.size() ||
      sizes->size() != ids.size()) {
    return trellis::Status::Invalid("malformed GetBlobs reply");
  }
  std::vector<Blob> blobs;
  blobs.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    if ((*offsets)[i] + (*sizes)[i] > core_->size()) {
      return trellis::Status::Invalid(
          "GetBlobs reply points outside the arena");
    }
    blobs.emplace_back(ids[i], core_->base() + (*offsets)[i], (*sizes)[i],
                       lease);
  }
  return blobs;
}

namespace {
void CollectReferences(const json& node, std::vector<ObjectID>* out) {
  if (!node.is_object()) return;
  auto id = node.find("id");
  uint64_t value = 0;
  if (id != node.end() && protocol::AsUint(*id, &value) && value != 0) {
    out->emplace_back(value);
    return;
  }
  auto members = node.find("members");
  if (members == node.end() || !members->is_object()) return;
  for (const auto& [name, member] : members->items()) {
    CollectReferences(member, out);
  }
}
}  // namespace

Result<ObjectID> Client::CreateObject(const ObjectMeta& meta,
                                      const PutOptions& options) {
  // The daemon treats a body nested deeper than the wire allows as a
  // protocol violation and hangs up; refuse it here with a clear error.
  if (1 + protocol::NestingDepth(meta.tree()) > protocol::kMaxBodyDepth) {
    return trellis::Status::Invalid(
        "object tree nests deeper than the protocol's " +
        std::to_string(protocol::kMaxBodyDepth) +
        " levels of maps and arrays (each tree level takes two)");
  }
  json body = protocol::CreateObjectBody(
      [&](std::vector<uint8_t>* out) { json::to_msgpack(meta.tree(), *out); },
      options.overwrite, options.persist, options.name);
  TRELLIS_ASSIGN_OR_RAISE(json reply,
                          core_->Call(MessageType::kCreateObject, body));
  std::vector<ObjectID> references;
  CollectReferences(meta.tree(), &references);
  for (ObjectID ref : references) core_->TakeOpenBlob(ref);  // sealed now
  return protocol::GetId(reply, "id");
}

Result<ObjectMeta> Client::GetMeta(ObjectID id) {
  TRELLIS_ASSIGN_OR_RAISE(auto metas, GetMetas({id}));
  return std::move(metas[0]);
}

namespace {
// The `count` trees of a GetMeta reply, sharing one lease on its holds.
Result<std::vector<ObjectMeta>> MetasOfReply(
    const std::shared_ptr<ClientCore>& core, json reply, size_t count) {
  auto held = protocol::GetIds(reply, "held");
  // Take ownership of the holds first, so they are released on any error.
  auto lease = std::make_shared<ClientLease>(
      core, held.ok() ? *held : std::vector<ObjectID>{});
  auto trees = reply.find("trees");
  if (!held.ok() || trees == reply.end() || !trees->is_array() ||
      trees->size() != count) {
    return trellis::Status::Invalid("malformed GetMeta reply");
  }
  std::vector<ObjectMeta> metas;
  for (json& tree : *trees) {
    TRELLIS_ASSIGN_OR_RAISE(ObjectMeta meta,
                            ObjectMeta::FromJson(std::move(tree), lease));
    metas.push_back(std::move(meta));
  }
  return metas;
}
}  // namespace

Result<std::vector<ObjectMeta>> Client::GetMetas(
    const std::vector<ObjectID>& ids) {
  TRELLIS_ASSIGN_OR_RAISE(
      json reply, core_->Call(MessageType::kGetMeta, protocol::IdsBody(ids)));
  return MetasOfReply(core_, std::move(reply), ids.size());
}

Result<ObjectMeta> Client::GetMetaByName(const std::string& name) {
  TRELLIS_ASSIGN_OR_RAISE(json reply, core_->Call(MessageType::kGetMeta,
                                                  protocol::NamesBody({name})));
  TRELLIS_ASSIGN_OR_RAISE(auto metas, MetasOfReply(core_, std::move(reply), 1));
  return std::move(metas[0]);
}

Result<std::vector<ObjectMeta>> Client::ListObjects(const std::string& pattern,
                                                    size_t limit) {
  TRELLIS_ASSIGN_OR_RAISE(
      json reply, core_->Call(MessageType::kListObjects,
                              json{{"pattern", pattern}, {"limit", limit}}));
  auto objects = reply.find("objects");
  if (objects == reply.end() || !objects->is_array()) {
    return trellis::Status::Invalid("malformed ListObjects reply");
  }
  std::vector<ObjectMeta> metas;
  for (json& item : *objects) {
    TRELLIS_ASSIGN_OR_RAISE(ObjectMeta meta,
                            ObjectMeta::FromJson(std::move(item)));
    metas.push_back(std::move(meta));
  }
  return metas;
}

Result<std::vector<ObjectID>> Client::Delete(const std::vector<ObjectID>& ids,
                                             bool deep, bool force) {
  TRELLIS_ASSIGN_OR_RAISE(
      json reply,
      core_->Call(MessageType::kDelete, json{{"ids", protocol::IdsToJson(ids)},
                                             {"deep", deep},
                                             {"force", force}}));
  return protocol::GetIds(reply, "deleted");
}

trellis::Status Client::Persist(ObjectID id) {
  auto reply = core_->Call(MessageType::kPersist, json{{"id", id.value()}});
  return reply.ok() ? trellis::Status::OK() : reply.status();
}

trellis::Status Client::Pin(const std::vector<ObjectID>& ids) {
  auto reply = core_->Call(MessageType::kPin, protocol::IdsBody(ids));
  return reply.ok() ? trellis::Status::OK() : reply.status();
}

trellis::Status Client::Unpin(const std::vector<ObjectID>& ids) {
  auto reply = core_->Call(MessageType::kUnpin, protocol::IdsBody(ids));
  return reply.ok() ? trellis::Status::OK() : reply.status();
}

Result<uint64_t> Client::Evict(const std::vector<ObjectID>& ids) {
  TRELLIS_ASSIGN_OR_RAISE(
      json reply, core_->Call(MessageType::kEvict, protocol::IdsBody(ids)));
  return protocol::GetUint(reply, "evicted_bytes");
}

Result<uint64_t> Client::MemoryTrim() {
  TRELLIS_ASSIGN_OR_RAISE(
      json reply, core_->Call(MessageType::kMemoryTrim, json::object()));
  return protocol::GetUint(reply, "trimmed_bytes");
}

trellis::Status Client::PutName(ObjectID id, const std::string& name,
                                bool overwrite) {
  auto reply = core_->Call(
      MessageType::kPutName,
      json{{"name", name}, {"id", id.value()}, {"overwrite", overwrite}});
  return reply.ok() ? trellis::Status::OK() : reply.status();
}

Result<ObjectID> Client::GetName(const std::string& name, bool wait,
                                 std::chrono::milliseconds timeout) {
  json body = {{"name", name}, {"wait", wait}};
  if (wait && timeout.count() > 0) {
    body["timeout_ms"] = static_cast<uint64_t>(timeout.count());
  }
  TRELLIS_ASSIGN_OR_RAISE(json reply, core_->Call(MessageType::kGetName, body));
  return protocol::GetId(reply, "id");
}

trellis::Status Client::DropName(const std::string& name) {
  auto reply = core_->Call(MessageType::kDropName, json{{"name", name}});
  return reply.ok() ? trellis::Status::OK() : reply.status();
}

Result<std::vector<std::pair<std::string, ObjectID>>> Client::ListNames(
    const std::string& pattern, size_t limit) {
  TRELLIS_ASSIGN_OR_RAISE(
      json reply, core_->Call(MessageType::kListNames,
                              json{{"pattern", pattern}, {"limit", limit}}));
  auto names = reply.find("names");
  auto ids = protocol::GetUints(reply, "ids");
  if (names == reply.end() || !names->is_array() || !ids.ok() ||
      ids->size() != names->size()) {
    return trellis::Status::Invalid("malformed ListNames reply");
  }
  std::vector<std::pair<std::string, ObjectID>> out;
  for (size_t i = 0; i < ids->size(); ++i) {
    if (!(*names)[i].is_string())
      return trellis::Status::Invalid("malformed ListNames reply");
    out.emplace_back((*names)[i].get<std::string>(), ObjectID((*ids)[i]));
  }
  return out;
}

Result<StoreStatus> Client::Status() {
  TRELLIS_ASSIGN_OR_RAISE(json reply,
                          core_->Call(MessageType::kStatus, json::object()));
  StoreStatus s;
  auto u = [&](const char* key) {
    return protocol::GetUint(reply, key).ValueOr(0);
  };
  s.instance_id = static_cast<uint16_t>(u("instance_id"));
  s.backend = protocol::GetString(reply, "backend").ValueOr("");
  s.arena_size = u("arena_size");
  s.used = u("used");
  s.free = u("free");
  s.objects = u("objects");
  s.blobs = u("blobs");
  s.unsealed_blobs = u("unsealed_blobs");
  s.deleted_pending = u("deleted_pending");
  s.clients = u("clients");
  s.held_bytes = u("held_bytes");
  s.pinned_bytes = u("pinned_bytes");
  auto spill = reply.find("spill_enabled");
  s.spill_enabled =
      spill != reply.end() && spill->is_boolean() && spill->get<bool>();
  s.spilled_blobs = u("spilled_blobs");
  s.spilled_bytes = u("spilled_bytes");
  s.spill_count = u("spill_count");
  s.spill_bytes_total = u("spill_bytes_total");
  s.reload_count = u("reload_count");
  s.reload_bytes_total = u("reload_bytes_total");
  s.raw = std::move(reply);
  return s;
}

uint16_t Client::instance_id() const { return core_->instance_id(); }
uint64_t Client::arena_size() const { return core_->size(); }
const uint8_t* Client::arena_base() const { return core_->base(); }
bool Client::InArena(const void* p) const {
  auto* b = static_cast<const uint8_t*>(p);
  return b >= core_->base() && b < core_->base() + core_->size();
}
const std::string& Client::socket_path() const { return core_->path(); }

}  // namespace trellis
