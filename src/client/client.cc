#include "trellis/client.h"

#include <pthread.h>

#include <algorithm>
#include <mutex>
#include <unordered_set>

#include "client/client_core.h"
#include "client/object_meta_internal.h"
#include "common/socket_path.h"
#include "common/status_fields.h"

namespace trellis {

using protocol::json;
using protocol::MessageType;

// ---------------------------------------------------------------- ClientCore

OwnedBytes AllocateOwnedBytes(uint64_t size) {
  uint64_t rounded = std::max<uint64_t>(protocol::kBlobAlignment,
                                        (size + protocol::kBlobAlignment - 1) /
                                            protocol::kBlobAlignment *
                                            protocol::kBlobAlignment);
  return OwnedBytes(static_cast<uint8_t*>(
      std::aligned_alloc(protocol::kBlobAlignment, rounded)));
}

// ---------------------------------------------------------- fork safety
// A forked child has none of its parent's threads: no flusher, and a
// release_mutex_ or release_cv_ the parent's flusher held or waited on
// would never be let go (destroying that condition variable hangs). So
// around fork() every live core's release state is locked, and in the child
// each core forgets its flusher (the next Release starts one there).
namespace {
Mutex live_cores_mutex;
std::unordered_set<ClientCore*>& LiveCores() {
  static auto* cores = new std::unordered_set<ClientCore*>;  // never freed:
  return *cores;  // fork handlers may run during exit
}
}  // namespace

void ClientCore::BeforeFork() {
  live_cores_mutex.Lock();
  for (ClientCore* core : LiveCores()) core->release_mutex_.Lock();
}

void ClientCore::AfterForkInParent() {
  for (ClientCore* core : LiveCores()) core->release_mutex_.Unlock();
  live_cores_mutex.Unlock();
}

void ClientCore::AfterForkInChild() {
  for (ClientCore* core : LiveCores()) {
    if (core->flusher_.joinable()) core->flusher_.detach();  // not here
    // The parent's flusher may wait on it: a new one, the old one leaked.
    (void)core->release_cv_.release();
    core->release_cv_ = std::make_unique<CondVar>();
    core->release_mutex_.Unlock();
  }
  live_cores_mutex.Unlock();
}

ClientCore::ClientCore(std::unique_ptr<Transport> transport)
    : peer_(transport->peer()), transport_(std::move(transport)) {
  static std::once_flag registered;
  std::call_once(registered, [] {
    pthread_atfork(&ClientCore::BeforeFork, &ClientCore::AfterForkInParent,
                   &ClientCore::AfterForkInChild);
  });
  MutexLock lock(&live_cores_mutex);
  LiveCores().insert(this);
}

Result<std::shared_ptr<ClientCore>> ClientCore::Connect(
    const std::string& path) {
  TRELLIS_ASSIGN_OR_RAISE(std::unique_ptr<Transport> transport,
                          ConnectUnixTransport(path));
  return Start(std::move(transport));
}

Result<std::shared_ptr<ClientCore>> ClientCore::Start(
    std::unique_ptr<Transport> transport, const std::string& token) {
  std::shared_ptr<ClientCore> core(new ClientCore(std::move(transport)));
  TRELLIS_RETURN_NOT_OK(core->Hello(token));
  return core;
}

Status ClientCore::Hello(const std::string& token) {
  MutexLock lock(&io_mutex_);
  json hello{{"version", protocol::kProtocolVersion}};
  if (!token.empty()) hello["token"] = token;
  TRELLIS_ASSIGN_OR_RAISE(json reply, CallLocked(MessageType::kHello, hello));
  auto instance = protocol::GetUint(reply, "instance_id");
  auto max_inline = protocol::GetUint(reply, "max_inline_blob");
  if (!instance.ok() || !max_inline.ok()) {
    return Status::Invalid("malformed Hello reply from daemon");
  }
  TRELLIS_RETURN_NOT_OK(transport_->Attach(reply));
  arena_ = transport_->arena();  // null: a remote daemon
  instance_id_ = static_cast<uint16_t>(*instance);
  max_inline_blob_ = *max_inline;
  return Status::OK();
}

ClientCore::~ClientCore() {
  StopFlusher();
  Close();
  MutexLock lock(&live_cores_mutex);
  LiveCores().erase(this);
}

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
    TRELLIS_RETURN_NOT_OK(FillLocked());
  }
}

Status ClientCore::FillLocked() {
  uint8_t buffer[64 * 1024];
  auto n = transport_->Receive(buffer, sizeof(buffer));
  if (!n.ok()) {
    CloseLocked();
    return n.status();
  }
  decoder_.Feed(buffer, *n);
  return Status::OK();
}

Status ClientCore::UploadLocked(ObjectID id, const uint8_t* data,
                                uint64_t size) {
  for (uint64_t offset = 0; offset < size; offset += protocol::kMaxBulkChunk) {
    uint64_t chunk = std::min(protocol::kMaxBulkChunk, size - offset);
    auto header =
        protocol::EncodeBulkHeader(MessageType::kBlobData, id, offset, chunk);
    Status st = transport_->SendGathered(header.data(), header.size(),
                                         data + offset, chunk);
    if (!st.ok()) {
      CloseLocked();
      return st;
    }
  }
  return Status::OK();
}

Result<json> ClientCore::CallAfterUpload(MessageType type, const json& body,
                                         const std::vector<ObjectID>& uploads) {
  std::vector<std::pair<ObjectID, OpenBlob>> blobs;
  if (remote()) {
    MutexLock lock(&blobs_mutex_);
    for (ObjectID id : uploads) {
      auto it = open_blobs_.find(id);
      if (it != open_blobs_.end() && it->second.data) {
        blobs.emplace_back(id, it->second);
      }
    }
  }
  MutexLock lock(&io_mutex_);
  if (closed_) return Status::Disconnected("client is closed");
  for (const auto& [id, blob] : blobs) {
    TRELLIS_RETURN_NOT_OK(UploadLocked(id, blob.data, blob.size));
  }
  return CallLocked(type, body);
}

Result<uint64_t> ClientCore::ReadBulkChunk(ObjectID id, uint64_t done,
                                           uint64_t left, uint8_t* dst) {
  std::optional<protocol::BulkHeader> bulk;
  while (!bulk) {
    if (decoder_.NextIsBulk()) {
      auto next = decoder_.NextBulk();
      if (!next.ok()) {
        CloseLocked();
        return next.status();
      }
      bulk = *next;
    } else if (decoder_.buffered() >= protocol::kHeaderSize) {
      // Not a bulk frame: the daemon broke off (an Error) or misbehaves.
      TRELLIS_ASSIGN_OR_RAISE(protocol::Frame frame, ReadFrame());
      CloseLocked();  // the rest of the stream cannot be trusted
      if (frame.type == static_cast<uint16_t>(MessageType::kError)) {
        return protocol::StatusFromErrorBody(frame.body);
      }
      return Status::Invalid("expected the bytes of blob " + id.ToString() +
                             " from " + peer_ + ", got " +
                             protocol::MessageTypeName(frame.type));
    }
    if (!bulk) TRELLIS_RETURN_NOT_OK(FillLocked());
  }
  if (bulk->type != static_cast<uint16_t>(MessageType::kBlobData) ||
      bulk->blob != id || bulk->offset != done || bulk->size > left ||
      bulk->size == 0) {
    CloseLocked();
    return Status::Invalid("unexpected bulk frame from " + peer_ + " for " +
                           bulk->blob.ToString() + " at " +
                           std::to_string(bulk->offset) + " (expected " +
                           id.ToString() + " at " + std::to_string(done) + ")");
  }
  uint8_t* out = dst + done;
  uint64_t got = decoder_.Take(out, bulk->size);
  while (got < bulk->size) {  // the rest straight into the destination
    auto n = transport_->Receive(out + got, bulk->size - got);
    if (!n.ok()) {
      CloseLocked();
      return Status::Disconnected(
          n.status().message() + " in the middle of blob " + id.ToString() +
          " (" + std::to_string(done + got) + " bytes read)");
    }
    got += *n;
  }
  return bulk->size;
}

Result<std::vector<uint64_t>> ClientCore::StartReadBlobsLocked(
    const std::vector<ObjectID>& ids) {
  if (!remote()) {
    return Status::Invalid("ReadBlobs is for clients of a remote daemon");
  }
  TRELLIS_ASSIGN_OR_RAISE(json reply,
                          CallLocked(MessageType::kReadBlobs,
                                     json{{"ids", protocol::IdsToJson(ids)}}));
  auto sizes = protocol::GetUints(reply, "sizes");
  if (!sizes.ok() || sizes->size() != ids.size()) {
    CloseLocked();  // the bytes that follow cannot be framed
    return Status::Invalid("malformed ReadBlobs reply from " + peer_);
  }
  return std::move(*sizes);
}

Status ClientCore::ReadBlobBytesLocked(ObjectID id, uint64_t size,
                                       uint8_t* dst) {
  for (uint64_t done = 0; done < size;) {
    TRELLIS_ASSIGN_OR_RAISE(uint64_t n,
                            ReadBulkChunk(id, done, size - done, dst));
    done += n;
  }
  return Status::OK();
}

Result<std::shared_ptr<Lease>> ClientCore::ReadBlobs(
    const std::vector<ObjectID>& ids, std::vector<uint64_t>* sizes) {
  MutexLock lock(&io_mutex_);
  TRELLIS_ASSIGN_OR_RAISE(*sizes, StartReadBlobsLocked(ids));
  uint64_t total = 0;
  std::vector<uint64_t> positions =
      protocol::ConcatenatedPositions(*sizes, &total);
  OwnedBytes bytes = AllocateOwnedBytes(total);
  if (!bytes) {
    CloseLocked();  // the daemon is sending bytes we cannot take
    return Status::OutOfMemory("cannot allocate " + std::to_string(total) +
                               " bytes for blobs read from " + peer_);
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    TRELLIS_RETURN_NOT_OK(
        ReadBlobBytesLocked(ids[i], (*sizes)[i], bytes.get() + positions[i]));
  }
  return std::shared_ptr<Lease>(
      std::make_shared<OwnedLease>(std::move(bytes), total));
}

Status ClientCore::ReadBlobsInto(const std::vector<ObjectID>& ids,
                                 const std::vector<uint64_t>& sizes,
                                 const std::vector<uint8_t*>& dsts) {
  if (sizes.size() != ids.size() || dsts.size() != ids.size()) {
    return Status::Invalid("ReadBlobsInto needs one size and buffer per id");
  }
  MutexLock lock(&io_mutex_);
  TRELLIS_ASSIGN_OR_RAISE(std::vector<uint64_t> got, StartReadBlobsLocked(ids));
  for (size_t i = 0; i < ids.size(); ++i) {
    if (got[i] != sizes[i]) {
      CloseLocked();  // its bytes are on their way, and have nowhere to go
      return Status::Invalid("blob " + ids[i].ToString() + " on " + peer_ +
                             " has " + std::to_string(got[i]) +
                             " bytes, not the " + std::to_string(sizes[i]) +
                             " its tree says");
    }
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    TRELLIS_RETURN_NOT_OK(ReadBlobBytesLocked(ids[i], sizes[i], dsts[i]));
  }
  return Status::OK();
}

Result<std::shared_ptr<Lease>> ClientCore::LeaseOfHeld(
    std::vector<ObjectID> held) {
  if (!remote()) {
    return std::shared_ptr<Lease>(
        std::make_shared<ClientLease>(shared_from_this(), std::move(held)));
  }
  // The bytes are copied; the daemon need not keep them for us after that.
  std::vector<uint64_t> sizes;
  auto lease = held.empty()
                   ? Result<std::shared_ptr<Lease>>(
                         std::make_shared<OwnedLease>(AllocateOwnedBytes(0), 0))
                   : ReadBlobs(held, &sizes);
  // At once (a remote get is a copy, done now), so no flusher is needed.
  MutexLock lock(&io_mutex_);
  QueueReleases(held);
  FlushQueuedReleases();
  return lease;
}

json ClientCore::GetMetaBody(const std::vector<ObjectID>& ids,
                             bool fetch) const {
  if (!remote() && !fetch) return protocol::IdsBody(ids);  // pre-encoded
  json body = {{"ids", protocol::IdsToJson(ids)}};
  if (remote()) body["relocate"] = true;
  if (fetch) body["fetch"] = true;
  return body;
}

json ClientCore::GetMetaByNameBody(const std::vector<std::string>& names,
                                   bool fetch) const {
  if (!remote() && !fetch) return protocol::NamesBody(names);  // pre-encoded
  json body = {{"names", names}};
  if (remote()) body["relocate"] = true;
  if (fetch) body["fetch"] = true;
  return body;
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
  TRELLIS_RETURN_NOT_OK(ReadDeferredLocked());
  TRELLIS_ASSIGN_OR_RAISE(protocol::Frame reply, ReadFrame());
  return ReplyOf(std::move(reply));
}

Result<json> ClientCore::ReplyOf(protocol::Frame reply) {
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

Status ClientCore::SendDeferred(MessageType type, const json& body,
                                uint64_t tag) {
  MutexLock lock(&io_mutex_);
  TRELLIS_RETURN_NOT_OK(SendRequest(type, body));
  deferred_unread_.push_back(tag);
  return Status::OK();
}

Status ClientCore::ReadDeferredLocked() {
  for (size_t i = 0; i < deferred_unread_.size(); ++i) {
    auto frame = ReadFrame();
    if (!frame.ok()) {
      deferred_unread_.erase(deferred_unread_.begin(),
                             deferred_unread_.begin() + i);
      return frame.status();
    }
    deferred_.push_back({deferred_unread_[i], ReplyOf(std::move(*frame))});
  }
  deferred_unread_.clear();
  return Status::OK();
}

std::vector<ClientCore::DeferredReply> ClientCore::TakeDeferred() {
  MutexLock lock(&io_mutex_);
  if (!closed_) (void)ReadDeferredLocked();
  std::vector<DeferredReply> taken;
  taken.swap(deferred_);
  return taken;
}

bool ClientCore::HasDeferred() {
  MutexLock lock(&io_mutex_);
  return !deferred_.empty() || !deferred_unread_.empty();
}

Result<std::vector<uint8_t>> ClientCore::CallRaw(MessageType type,
                                                 const json& body) {
  MutexLock lock(&io_mutex_);
  TRELLIS_RETURN_NOT_OK(SendRequest(type, body));
  TRELLIS_RETURN_NOT_OK(ReadDeferredLocked());
  TRELLIS_ASSIGN_OR_RAISE(protocol::FrameDecoder::RawFrame reply,
                          ReadRawFrame());
  std::vector<uint8_t> bytes(reply.body, reply.body + reply.size);
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

void ClientCore::QueueReleasesLocked(const std::vector<ObjectID>& ids) {
  if (queued_releases_.empty()) {
    release_due_ = std::chrono::steady_clock::now() + kReleaseDelay;
  }
  queued_releases_.insert(queued_releases_.end(), ids.begin(), ids.end());
}

void ClientCore::QueueReleases(const std::vector<ObjectID>& ids) {
  MutexLock lock(&release_mutex_);
  QueueReleasesLocked(ids);
}

void ClientCore::Release(std::vector<ObjectID> ids) {
  if (ids.empty()) return;
  MutexLock lock(&release_mutex_);
  QueueReleasesLocked(ids);
  // No wake-up of the flusher: that would cost the system call (and, on a
  // virtual machine, the wake of an idle CPU) this queue exists to save.
  if (!flusher_.joinable() && !stop_flusher_) {  // the first, in this process
    flusher_ = std::thread([this] { RunFlusher(); });
  }
}

void ClientCore::RunFlusher() {
  auto period = kReleaseDelay;  // between looks at an empty queue
  release_mutex_.Lock();
  while (!stop_flusher_) {
    auto now = std::chrono::steady_clock::now();
    if (queued_releases_.empty()) {
      // Nothing to send: look again later, less and less often while the
      // client stays idle.
      release_cv_->WaitUntil(&release_mutex_, now + period);
      if (queued_releases_.empty()) period = std::min(2 * period, kIdlePeriod);
      continue;
    }
    period = kReleaseDelay;
    if (now < release_due_) {
      release_cv_->WaitUntil(&release_mutex_, release_due_);
      continue;
    }
    // Due and no request took them: send them. The io mutex is taken
    // first, as SendRequest does (it takes release_mutex_ under it).
    release_mutex_.Unlock();
    {
      MutexLock io(&io_mutex_);
      FlushQueuedReleases();
    }
    release_mutex_.Lock();
  }
  release_mutex_.Unlock();
}

void ClientCore::StopFlusher() {
  std::thread flusher;
  {
    MutexLock lock(&release_mutex_);
    stop_flusher_ = true;
    if (!flusher_.joinable()) return;
    flusher = std::move(flusher_);
    release_cv_->NotifyOne();
  }
  flusher.join();
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

void ClientCore::AddOpenBlob(ObjectID id, const uint8_t* data, uint64_t size) {
  MutexLock lock(&blobs_mutex_);
  open_blobs_[id] = OpenBlob{data, size};
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

BlobWriter::BlobWriter(std::shared_ptr<ClientCore> core, ObjectID id,
                       std::shared_ptr<uint8_t> owned, uint64_t size)
    : core_(std::move(core)),
      id_(id),
      data_(owned.get()),
      size_(size),
      owned_(std::move(owned)) {}

BlobWriter::~BlobWriter() { (void)Abort(); }

Status BlobWriter::Write(uint64_t offset, const void* src, uint64_t n) {
  if (offset > size_ || n > size_ - offset) {
    return Status::Invalid("write of " + std::to_string(n) + " bytes at " +
                           std::to_string(offset) + " overruns blob " +
                           id_.ToString() + " of " + std::to_string(size_) +
                           " bytes");
  }
  if (owned_ || core_->remote()) {
    ParallelMemcpy(data_ + offset, src, n);
  } else {
    SharedArena& arena = core_->arena();
    arena.Write(static_cast<uint64_t>(data_ - arena.base()) + offset, src, n);
  }
  return Status::OK();
}

Result<ObjectID> BlobWriter::Seal() {
  if (!core_->IsOpenBlob(id_)) {
    return Status::Invalid("blob " + id_.ToString() +
                           " is no longer open (already sealed or aborted)");
  }
  // A remote blob's bytes go up first, in the same burst as the Seal.
  auto reply = core_->CallAfterUpload(MessageType::kSeal,
                                      protocol::IdsBody({id_}), {id_});
  core_->TakeOpenBlob(id_);  // sealed, or (an error) the daemon dropped it
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

Result<std::unique_ptr<Client>> Client::ConnectRpc(const std::string& endpoint,
                                                   const std::string& token) {
  std::string presented = token;
  if (presented.empty()) {
    TRELLIS_ASSIGN_OR_RAISE(presented, RpcTokenFromEnvironment());
  }
  TRELLIS_ASSIGN_OR_RAISE(std::unique_ptr<Transport> transport,
                          ConnectTcpTransport(endpoint));
  TRELLIS_ASSIGN_OR_RAISE(auto core,
                          ClientCore::Start(std::move(transport), presented));
  return std::unique_ptr<Client>(new Client(std::move(core)));
}

bool Client::is_remote() const { return core_->remote(); }

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
  if (core_->remote()) {
    // No shared arena: each writer fills a buffer of its own, uploaded at
    // Seal (or by the CreateObject that seals it).
    std::vector<OwnedBytes> buffers;
    for (uint64_t size : sizes) {
      buffers.push_back(AllocateOwnedBytes(size));
      if (!buffers.back()) {
        (void)core_->Call(MessageType::kAbort, protocol::IdsBody(ids));
        return trellis::Status::OutOfMemory(
            "cannot allocate a " + std::to_string(size) +
            "-byte buffer for a blob of a remote daemon");
      }
    }
    std::vector<std::unique_ptr<BlobWriter>> writers;
    for (size_t i = 0; i < ids.size(); ++i) {
      std::shared_ptr<uint8_t> owned(buffers[i].release(), FreeDeleter());
      core_->AddOpenBlob(ids[i], owned.get(), sizes[i]);
      writers.push_back(std::make_unique<BlobWriter>(
          core_, ids[i], std::move(owned), sizes[i]));
    }
    return writers;
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
  if (core_->remote()) {
    // Uploaded straight from `data`: no copy into a writer's buffer.
    TRELLIS_ASSIGN_OR_RAISE(json reply,
                            core_->Call(MessageType::kCreateBlobs,
                                        json{{"sizes", json::array({size})}}));
    TRELLIS_ASSIGN_OR_RAISE(std::vector<ObjectID> ids,
                            protocol::GetIds(reply, "ids"));
    if (ids.size() != 1) {
      return trellis::Status::Invalid("malformed CreateBlobs reply");
    }
    core_->AddOpenBlob(ids[0], static_cast<const uint8_t*>(data), size);
    auto sealed =
        core_->CallAfterUpload(MessageType::kSeal, protocol::IdsBody(ids), ids);
    core_->TakeOpenBlob(ids[0]);
    if (!sealed.ok()) {
      (void)core_->Call(MessageType::kAbort, protocol::IdsBody(ids));
      return sealed.status();
    }
    return ids[0];
  }
  TRELLIS_ASSIGN_OR_RAISE(auto writer, CreateBlob(size));
  TRELLIS_RETURN_NOT_OK(writer->Write(0, data, size));
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
  if (core_->remote()) {
    std::vector<uint64_t> sizes;
    TRELLIS_ASSIGN_OR_RAISE(std::shared_ptr<Lease> lease,
                            core_->ReadBlobs(ids, &sizes));
    std::vector<uint64_t> positions =
        protocol::ConcatenatedPositions(sizes, nullptr);
    std::vector<Blob> blobs;
    blobs.reserve(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      blobs.emplace_back(ids[i],
                         lease->BlobData(ids[i], positions[i], sizes[i]),
                         sizes[i], lease);
    }
    return blobs;
  }
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
  std::vector<ObjectID> references;
  CollectReferences(tree, &references);
  // Remote: the unsealed blobs' bytes are uploaded just before.
  TRELLIS_ASSIGN_OR_RAISE(
      json reply,
      core_->CallAfterUpload(MessageType::kCreateObject, body, references));
  for (ObjectID ref : references) core_->TakeOpenBlob(ref);  // sealed now
  return protocol::GetId(reply, "id");
}

Result<ObjectMeta> Client::GetMeta(ObjectID id, const GetOptions& options) {
  TRELLIS_ASSIGN_OR_RAISE(auto metas, GetMetas({id}, options));
  return std::move(metas[0]);
}

namespace {
// The `count` trees of a GetMeta reply, sharing one lease on its holds.
Result<std::vector<ObjectMeta>> MetasOfReply(
    const std::shared_ptr<ClientCore>& core, json reply, size_t count) {
  auto held = protocol::GetIds(reply, "held");
  // Take ownership of the holds first, so they are released on any error
  // (remote: the bytes are read and the holds released here).
  TRELLIS_ASSIGN_OR_RAISE(
      std::shared_ptr<Lease> lease,
      core->LeaseOfHeld(held.ok() ? *held : std::vector<ObjectID>{}));
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
    const std::vector<ObjectID>& ids, const GetOptions& options) {
  TRELLIS_ASSIGN_OR_RAISE(json reply,
                          core_->Call(MessageType::kGetMeta,
                                      core_->GetMetaBody(ids, options.fetch)));
  return MetasOfReply(core_, std::move(reply), ids.size());
}

Result<ObjectMeta> Client::GetMetaByName(const std::string& name,
                                         const GetOptions& options) {
  TRELLIS_ASSIGN_OR_RAISE(
      json reply, core_->Call(MessageType::kGetMeta,
                              core_->GetMetaByNameBody({name}, options.fetch)));
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
  if (core_->remote()) return false;
  auto* b = static_cast<const uint8_t*>(p);
  return b >= core_->base() && b < core_->base() + core_->size();
}
const std::string& Client::socket_path() const { return core_->path(); }

}  // namespace trellis
