// trellis::Client: the C++ client of a local trellisd, zero-copy.
//
//   TRELLIS_ASSIGN_OR_RAISE(auto client, trellis::Client::Connect());
//   TRELLIS_ASSIGN_OR_RAISE(auto writer, client->CreateBlob(n));
//   std::memcpy(writer->data(), src, n);
//   TRELLIS_ASSIGN_OR_RAISE(trellis::ObjectID id, writer->Seal());
//   TRELLIS_RETURN_NOT_OK(client->PutName(id, "x"));
//   // another process:
//   TRELLIS_ASSIGN_OR_RAISE(trellis::ObjectID id, client->GetName("x",
//   /*wait=*/true)); TRELLIS_ASSIGN_OR_RAISE(trellis::Blob blob,
//   client->GetBlob(id));  // no copy
//
// Thread-safety: a Client may be used from several threads; requests are
// serialised on its one connection, so a blocking GetName delays the other
// threads' requests (use one Client per thread for concurrency).
// Lifetime: Blobs, ObjectMetas and typed objects obtained from a client keep
// the arena mapped and their objects held even after the Client is destroyed;
// the daemon is told when the last of them goes away.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "trellis/object.h"
#include "trellis/object_id.h"
#include "trellis/status.h"
#include "trellis/store_status.h"

namespace trellis {

class ClientCore;

// One daemon of a cluster, as it registered itself (Client::ClusterInfo).
struct ClusterMember {
  uint16_t instance_id = 0;
  std::string hostname;
  std::string ipc_socket;
  std::string rpc_endpoint;  // "host:port"; empty without --rpc
  uint64_t arena_size = 0;
  uint64_t arena_used = 0;  // as last reported (etcd: at most 5 s old)
};

// The cluster a daemon belongs to. A daemon on the local backend is a
// cluster of one: `cluster` is empty and `members` holds just itself.
struct ClusterInfo {
  std::string cluster;
  std::string backend;
  uint16_t instance_id = 0;            // the daemon answering
  std::vector<ClusterMember> members;  // live members, by instance id
};

struct PutOptions {
  std::string name;       // bind this name to the new object (if not empty)
  bool overwrite = true;  // rebind a name already bound to another object
  bool persist = false;   // publish to the metadata store
};

struct GetOptions {
  // Copy an object another member of the cluster made to this daemon
  // first (trellis.get(..., fetch=True)).
  bool fetch = false;
};

// A blob being written. Only its creator sees it until Seal. Destroying an
// unsealed writer aborts the blob (its memory is reused). Not thread-safe.
// For a remote client (Client::ConnectRpc), data() is a buffer the writer
// owns, and Seal (or the CreateObject that references the blob) uploads it.
class BlobWriter {
 public:
  BlobWriter(std::shared_ptr<ClientCore> core, ObjectID id, uint8_t* data,
             uint64_t size);
  BlobWriter(std::shared_ptr<ClientCore> core, ObjectID id,
             std::shared_ptr<uint8_t> owned, uint64_t size);
  ~BlobWriter();
  BlobWriter(const BlobWriter&) = delete;
  BlobWriter& operator=(const BlobWriter&) = delete;

  ObjectID id() const { return id_; }
  uint8_t* data() { return data_; }
  uint64_t size() const { return size_; }

  // Copies `n` bytes from `src` into the blob at `offset` (Invalid if that
  // overruns it). The same bytes as a memcpy into data(), but cheaper where
  // this process has not touched those pages of the arena yet (it writes
  // them through the arena file rather than faulting them in here).
  Status Write(uint64_t offset, const void* src, uint64_t n);
  // Makes the blob immutable and readable by all; returns its id.
  Result<ObjectID> Seal();
  // Frees the blob. Idempotent.
  Status Abort();

 private:
  std::shared_ptr<ClientCore> core_;
  ObjectID id_;
  uint8_t* data_;
  uint64_t size_;
  std::shared_ptr<uint8_t> owned_;  // remote: the buffer data_ points into
};

class Client {
 public:
  // Connects to the daemon serving `socket` (empty: DefaultSocketPath(), i.e.
  // $TRELLIS_SOCKET or /tmp/trellis-$UID/trellis.sock) and maps its arena.
  // Disconnected if nothing serves it, Invalid on a protocol mismatch.
  static Result<std::unique_ptr<Client>> Connect(
      const std::string& socket = "");
  // Connects to the RPC (TCP) server of a daemon on any machine
  // (trellisd --rpc), at `endpoint` "HOST:PORT" or "[V6]:PORT", presenting
  // `token` (empty: the content of the file $TRELLIS_RPC_TOKEN_FILE, if
  // set, else none). The same API with the same errors, but nothing is
  // shared: writers fill client buffers that Seal uploads, gets copy the
  // bytes into buffers that the returned Blobs/ObjectMetas own (no holds
  // stay at the daemon), and arena_base()/InArena() report no arena.
  // Errors: Invalid for a malformed endpoint or a refused token ("RPC token
  // rejected: ..."); Disconnected naming the endpoint if nothing serves it
  // or the daemon goes away later; IOError if $TRELLIS_RPC_TOKEN_FILE
  // cannot be read.
  static Result<std::unique_ptr<Client>> ConnectRpc(
      const std::string& endpoint, const std::string& token = "");
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // --- blobs ---------------------------------------------------------------
  // One round trip. OutOfMemory if the arena cannot hold `size` bytes.
  Result<std::unique_ptr<BlobWriter>> CreateBlob(uint64_t size);
  // Several writers in one round trip (all or nothing).
  Result<std::vector<std::unique_ptr<BlobWriter>>> CreateBlobs(
      const std::vector<uint64_t>& sizes);
  // Copies `size` bytes into a new sealed blob: one round trip for small
  // payloads (sent inline), create + parallel copy + seal for large ones.
  Result<ObjectID> PutBlob(const void* data, uint64_t size);
  // Puts many small payloads in one round trip.
  Result<std::vector<ObjectID>> PutBlobs(
      const std::vector<std::pair<const void*, uint64_t>>& payloads);
  // The bytes of a sealed blob, in place (no copy). One round trip.
  Result<Blob> GetBlob(ObjectID id);
  Result<std::vector<Blob>> GetBlobs(const std::vector<ObjectID>& ids);

  // --- objects -------------------------------------------------------------
  // Creates the object described by `meta` (docs/format.md), sealing the
  // unsealed blobs of this client that it references, and applies `options`
  // (name, persist) in the same round trip. Returns the root's id.
  Result<ObjectID> CreateObject(const ObjectMeta& meta,
                                const PutOptions& options = {});
  // The complete tree of an object; its blobs stay readable while the
  // returned meta (or anything built from it) lives. One round trip.
  // An object another member of the cluster made is ObjectNotFound saying
  // where it lives, unless options.fetch: then the daemon copies it here
  // first (once, however many ask at the same time) and keeps the copy.
  Result<ObjectMeta> GetMeta(ObjectID id, const GetOptions& options = {});
  Result<std::vector<ObjectMeta>> GetMetas(const std::vector<ObjectID>& ids,
                                           const GetOptions& options = {});
  // The tree of the object bound to `name`, in one round trip (GetName then
  // GetMeta take two). ObjectNotFound if the name is not bound.
  Result<ObjectMeta> GetMetaByName(const std::string& name,
                                   const GetOptions& options = {});
  // Shallow descriptions (id, typename, nbytes, fields) of objects whose type
  // name matches the glob `pattern`.
  Result<std::vector<ObjectMeta>> ListObjects(const std::string& pattern = "*",
                                              size_t limit = 100000);
  // Deletes objects (and with `deep` their members that nothing else uses).
  // Without `force`, an object that is a member of another is Invalid.
  // Objects still read by someone vanish from lookups at once; their bytes
  // are freed when the last reader releases them. Returns what was deleted.
  Result<std::vector<ObjectID>> Delete(const std::vector<ObjectID>& ids,
                                       bool deep = true, bool force = false);
  trellis::Status Persist(ObjectID id);

  // --- memory pressure (a daemon started with --spill-dir) ---------------
  // Keeps the blobs of these objects in memory (reloading any on disk);
  // pinned blobs are never spilled. Blocks until they are in memory.
  trellis::Status Pin(const std::vector<ObjectID>& ids);
  trellis::Status Unpin(const std::vector<ObjectID>& ids);
  // Spills these objects' blobs to disk now and frees their memory. Invalid
  // if one is held by a reader or pinned, or if spilling is off. Returns the
  // bytes written. Gets reload them transparently.
  Result<uint64_t> Evict(const std::vector<ObjectID>& ids);
  // Returns the arena's free pages to the OS; returns the bytes released.
  Result<uint64_t> MemoryTrim();

  // --- names ---------------------------------------------------------------
  trellis::Status PutName(ObjectID id, const std::string& name,
                          bool overwrite = true);
  // With `wait`, blocks until someone binds the name, up to `timeout`
  // (zero: no limit); Timeout then. ObjectNotFound if not bound and !wait.
  Result<ObjectID> GetName(
      const std::string& name, bool wait = false,
      std::chrono::milliseconds timeout = std::chrono::milliseconds(0));
  trellis::Status DropName(const std::string& name);
  Result<std::vector<std::pair<std::string, ObjectID>>> ListNames(
      const std::string& pattern = "*", size_t limit = 100000);

  // --- the daemon ----------------------------------------------------------
  // Every field of TRELLIS_STORE_STATUS_FIELDS (trellis/store_status.h).
  // One round trip.
  Result<StoreStatus> Status();
  // The cluster's members (those whose lease is alive). One round trip; the
  // daemon asks its metadata store (IOError/Disconnected if etcd is down).
  Result<trellis::ClusterInfo> ClusterInfo();
  uint16_t instance_id() const;
  // True for a client made by ConnectRpc (no shared arena).
  bool is_remote() const;
  uint64_t arena_size() const;  // 0 when remote
  // This process's mapping of the arena: [arena_base, arena_base+arena_size);
  // null when remote.
  const uint8_t* arena_base() const;
  bool InArena(const void* p) const;  // always false when remote
  // The daemon's address: its socket path, or "HOST:PORT" when remote.
  const std::string& socket_path() const;

  // Closes the connection. Later calls fail with Disconnected; objects
  // already gotten stay mapped (the daemon no longer counts them as held).
  void Close();

 private:
  friend class ClientInternals;  // src/client/client_core.h
  explicit Client(std::shared_ptr<ClientCore> core);
  std::shared_ptr<ClientCore> core_;
};

// Copies `n` bytes using several threads when that is faster (large n).
void ParallelMemcpy(void* dst, const void* src, size_t n);

}  // namespace trellis
