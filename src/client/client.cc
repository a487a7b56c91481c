#include "trellis/client.h"

#include "client/client_core.h"
#include "client/object_meta_internal.h"
#include "common/socket_path.h"
#include "common/status_fields.h"

namespace trellis {

using protocol::json;
using protocol::MessageType;

// ---------------------------------------------------------------- ClientCore

ClientCore::ClientCore(std::unique_ptr<Transport> transport)
    : peer_(transport->peer()), transport_(std::move(transport)) {}

Result<std::shared_ptr<ClientCore>> ClientCore::Connect(
    const std::string& path) {
  TRELLIS_ASSIGN_OR_RAISE(std::unique_ptr<Transport> transport,
                          ConnectUnixTransport(path));
  return Start(std::move(transport));
}

Result<std::shared_ptr<ClientCore>> ClientCore::Start(
    std::unique_ptr<Transport> transport) {
  std::shared_ptr<ClientCore> core(new ClientCore(std::move(transport)));
  TRELLIS_RETURN_NOT_OK(core->Hello());
  return core;
}

Status ClientCore::Hello() {
  MutexLock lock(&io_mutex_);
  TRELLIS_ASSIGN_OR_RAISE(
      json reply, CallLocked(MessageType::kHello,
                             json{{"version", protocol::kProtocolVersion}}));
  auto instance = protocol::GetUint(reply, "instance_id");
  auto max_inline = protocol::GetUint(reply, "max_inline_blob");
  if (!instance.ok() || !max_inline.ok()) {
    return Status::Invalid("malformed Hello reply from daemon");
  }
  TRELLIS_RETURN_NOT_OK(transport_->Attach(reply));
  arena_ = transport_->arena();
  if (!arena_) {
    return Status::NotImplemented("the daemon at " + peer_ +
                                  " shares no arena with this process; "
                                  "remote daemons are not supported yet");
  }
  instance_id_ = static_cast<uint16_t>(*instance);
  max_inline_blob_ = *max_inline;
  return Status::OK();
}

ClientCore::~ClientCore() { Close(); }

Status ClientCore::SendLocked(const std::vector<uint8_t>& bytes) {
  Status st = transport_->Send(bytes.data(), bytes.size());
  if (!st.ok()) CloseLocked();
  return st;
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

Result<protocol::FrameDecoder::RawFrame> ClientCore::ReadRawFrame() {
  while (true) {
    auto frame = decoder_.NextRaw();
    if (!frame.ok()) {
      CloseLocked();
      return frame.status();
    }
    if (frame->has_value()) return **frame;
    uint8_t buffer[64 * 1024];
    auto n = transport_->Receive(buffer, sizeof(buffer));
    if (!n.ok()) {
      CloseLocked();
      return n.status();
    }
    decoder_.Feed(buffer, *n);
  }
}

Status ClientCore::SendRequest(MessageType type, const json& body) {
  if (closed_) return Status::Disconnected("client is closed");
  out_.clear();
  AppendQueuedReleases(&out_);  // queued releases travel with the request
  protocol::AppendFrame(type, body, &out_);
  return SendLocked(out_);
}

Result<json> ClientCore::Call(MessageType type, const json& body) {
  MutexLock lock(&io_mutex_);
  return CallLocked(type, body);
}

Result<json> ClientCore::CallLocked(MessageType type, const json& body) {
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
  MutexLock lock(&io_mutex_);
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
    MutexLock lock(&release_mutex_);
    ids.swap(queued_releases_);
  }
  if (!ids.empty()) {
    protocol::AppendFrame(MessageType::kRelease, protocol::IdsBody(ids), out);
  }
}

void ClientCore::FlushQueuedReleases() {
  if (closed_) return;
  std::vector<uint8_t> out;
  AppendQueuedReleases(&out);
  if (!out.empty()) (void)SendLocked(out);
}

void ClientCore::Release(std::vector<ObjectID> ids) {
  if (ids.empty()) return;
  {
    MutexLock lock(&release_mutex_);
    queued_releases_.insert(queued_releases_.end(), ids.begin(), ids.end());
  }
  if (io_mutex_.TryLock()) {
    FlushQueuedReleases();
    io_mutex_.Unlock();
  }
}

void ClientCore::Close() {
  MutexLock lock(&io_mutex_);
  FlushQueuedReleases();
  CloseLocked();
}

void ClientCore::CloseLocked() {
  if (closed_) return;
  closed_ = true;
  transport_->Close();
}

void ClientCore::AddOpenBlob(ObjectID id) {
  MutexLock lock(&blobs_mutex_);
  open_blobs_.insert(id);
}

bool ClientCore::TakeOpenBlob(ObjectID id) {
  MutexLock lock(&blobs_mutex_);
  return open_blobs_.erase(id) > 0;
}

bool ClientCore::IsOpenBlob(ObjectID id) {
  MutexLock lock(&blobs_mutex_);
  return open_blobs_.count(id) > 0;
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
  SharedArena& arena = core_->arena();
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!arena.Range(offsets[i], sizes[i])) {
      return trellis::Status::Invalid(
          "CreateBlobs reply points outside the arena");
    }
  }
  std::vector<std::unique_ptr<BlobWriter>> writers;
  for (size_t i = 0; i < ids.size(); ++i) {
    // A writer is for writing the whole blob: map its pages now, in bulk.
    // Small blobs are left to fault (a few pages, and granules of other
    // blobs would be populated needlessly).
    if (sizes[i] >= kPrepareWriteThreshold) {
      arena.PrepareWrite(offsets[i], sizes[i]);
    }
    core_->AddOpenBlob(ids[i]);
    writers.push_back(std::make_unique<BlobWriter>(
        core_, ids[i], arena.Range(offsets[i], sizes[i]), sizes[i]));
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
    const uint8_t* data = lease->BlobData(ids[i], (*offsets)[i], (*sizes)[i]);
    if (!data) {
      return trellis::Status::Invalid(
          "GetBlobs reply points outside the arena");
    }
    blobs.emplace_back(ids[i], data, (*sizes)[i], lease);
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
  const json& tree = ObjectMetaAccess::TreeOf(meta);
  if (1 + protocol::NestingDepth(tree) > protocol::kMaxBodyDepth) {
    return trellis::Status::Invalid(
        "object tree nests deeper than the protocol's " +
        std::to_string(protocol::kMaxBodyDepth) +
        " levels of maps and arrays (each tree level takes two)");
  }
  json body = protocol::CreateObjectBody(
      [&](std::vector<uint8_t>* out) { json::to_msgpack(tree, *out); },
      options.overwrite, options.persist, options.name);
  TRELLIS_ASSIGN_OR_RAISE(json reply,
                          core_->Call(MessageType::kCreateObject, body));
  std::vector<ObjectID> references;
  CollectReferences(tree, &references);
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
                            ObjectMetaAccess::FromJson(std::move(tree), lease));
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
                            ObjectMetaAccess::FromJson(std::move(item)));
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
  return protocol::DecodeStatus(reply);
}

Result<ClusterInfo> Client::ClusterInfo() {
  TRELLIS_ASSIGN_OR_RAISE(
      json reply, core_->Call(MessageType::kClusterInfo, json::object()));
  trellis::ClusterInfo info;
  TRELLIS_ASSIGN_OR_RAISE(info.cluster, protocol::GetString(reply, "cluster"));
  TRELLIS_ASSIGN_OR_RAISE(info.backend, protocol::GetString(reply, "backend"));
  TRELLIS_ASSIGN_OR_RAISE(uint64_t self,
                          protocol::GetUint(reply, "instance_id"));
  info.instance_id = static_cast<uint16_t>(self);
  auto members = reply.find("members");
  if (members == reply.end() || !members->is_array()) {
    return Status::Invalid("ClusterInfo reply: 'members' must be an array");
  }
  for (const json& m : *members) {
    if (!m.is_object()) {
      return Status::Invalid("ClusterInfo reply: a member must be a map");
    }
    ClusterMember member;
    TRELLIS_ASSIGN_OR_RAISE(uint64_t id, protocol::GetUint(m, "instance_id"));
    member.instance_id = static_cast<uint16_t>(id);
    TRELLIS_ASSIGN_OR_RAISE(member.hostname,
                            protocol::GetString(m, "hostname"));
    TRELLIS_ASSIGN_OR_RAISE(member.ipc_socket,
                            protocol::GetString(m, "ipc_socket"));
    TRELLIS_ASSIGN_OR_RAISE(member.rpc_endpoint,
                            protocol::GetString(m, "rpc_endpoint"));
    TRELLIS_ASSIGN_OR_RAISE(member.arena_size,
                            protocol::GetUint(m, "arena_size"));
    TRELLIS_ASSIGN_OR_RAISE(member.arena_used,
                            protocol::GetUint(m, "arena_used"));
    info.members.push_back(std::move(member));
  }
  return info;
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
