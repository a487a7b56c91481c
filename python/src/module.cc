// trellis._core: the pybind11 binding of libtrellis used by the pure-Python
// package in python/trellis/. It binds the client calls one to one and adds
// the few loops that must not run in Python (JSON trees, string columns,
// large copies). Every call that talks to the daemon or copies bytes
// releases the GIL; errors become Python exceptions only through errors.h.
#include <pybind11/numpy.h>
#include <pybind11/operators.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "client/client_core.h"
#include "client/object_meta_internal.h"
#include "client/shared_arena.h"
#include "common/protocol.h"
#include "errors.h"
#include "json_convert.h"
#include "strings.h"
#include "tree_decode.h"
#include "trellis/client.h"
#include "trellis/object.h"
#include "trellis/store_status.h"

namespace py = pybind11;
using json = trellis::protocol::json;

namespace trellis::python {
namespace {

// Runs `fn` with the GIL released; its result is destroyed with the GIL held.
template <typename F>
auto WithoutGil(F&& fn) {
  py::gil_scoped_release release;
  return fn();
}

// Address of a buffer's first byte as a Python int (for arena range checks).
uintptr_t Address(const void* p) { return reinterpret_cast<uintptr_t>(p); }

class PyClient;

// A blob being written. Its buffer is writable until it is sealed, aborted
// or consumed by Client.create_object; after that it has length 0.
// An inline writer (Client.inline_blob) keeps its bytes in this process
// until create_object sends them with the tree: one round trip for the
// whole put, the daemon copying the bytes into the arena (docs/protocol.md,
// CreateObject's `data`).
class PyBlobWriter {
 public:
  PyBlobWriter(std::shared_ptr<PyClient> client,
               std::unique_ptr<BlobWriter> writer)
      : client_(std::move(client)), writer_(std::move(writer)) {}
  // An inline writer of `size` zero bytes, in the buffer its client kept
  // from an earlier one (see PyClient::TakeInlineBuffer).
  PyBlobWriter(std::shared_ptr<PyClient> client, uint64_t size);
  ~PyBlobWriter();
  PyBlobWriter(const PyBlobWriter&) = delete;
  PyBlobWriter& operator=(const PyBlobWriter&) = delete;

  bool is_inline() const { return writer_ == nullptr; }
  // The inline writer's bytes.
  const std::vector<uint8_t>& local() const { return local_; }
  ObjectID id() const { return writer_ ? writer_->id() : ObjectID(); }
  uint64_t size() const { return writer_ ? writer_->size() : local_.size(); }
  bool open() const { return open_; }
  uint8_t* data() { return writer_ ? writer_->data() : local_.data(); }

  // Copies a C- or F-contiguous array's bytes to `offset`, in parallel for
  // large arrays.
  void Write(uint64_t offset, const py::array& source) {
    CheckOpen();
    if (!(source.flags() & (py::array::c_style | py::array::f_style))) {
      ThrowInvalid("BlobWriter.write needs a contiguous array");
    }
    uint64_t n = static_cast<uint64_t>(source.nbytes());
    CheckRange(offset, n);
    WriteBytes(offset, source.data(), n);
  }

  // Copies `n` bytes (range checked by the caller) to `offset`, releasing
  // the GIL: an arena writer's BlobWriter::Write (cheaper than a memcpy
  // into pages this process never touched), an inline one's memcpy.
  void WriteBytes(uint64_t offset, const void* src, uint64_t n) {
    if (writer_) {
      ThrowIfError(WithoutGil([&] { return writer_->Write(offset, src, n); }));
      return;
    }
    uint8_t* dst = data() + offset;
    WithoutGil([&] {
      ParallelMemcpy(dst, src, n);
      return 0;
    });
  }

  void CheckRange(uint64_t offset, uint64_t n) const {
    if (offset > size() || n > size() - offset) {
      ThrowInvalid("write of " + std::to_string(n) + " bytes at offset " +
                   std::to_string(offset) + " overruns " + Describe() + " of " +
                   std::to_string(size()) + " bytes");
    }
  }

  void CheckOpen() const {
    if (!open_) {
      ThrowInvalid(Describe() + " is no longer writable (sealed or aborted)");
    }
  }

  std::string Describe() const {
    return writer_ ? "blob " + id().ToString() : std::string("inline blob");
  }

  // Seals the blob and returns a read-only view of it (two round trips:
  // the view holds the blob, which its creator does not).
  Blob Seal();

  void Abort() {
    open_ = false;
    if (!writer_) return local_.clear();
    ThrowIfError(WithoutGil([&] { return writer_->Abort(); }));
  }

  // Called once the daemon sealed the blob as part of an object.
  void MarkConsumed() { open_ = false; }

 private:
  std::shared_ptr<PyClient> client_;
  std::unique_ptr<BlobWriter> writer_;
  std::vector<uint8_t> local_;  // an inline writer's bytes
  bool open_ = true;
};

// Keeps the blobs of one GetMeta reply readable; hands out Blob views.
struct PyLease {
  std::shared_ptr<Lease> lease;

  Blob MakeBlob(uint64_t id, uint64_t offset, uint64_t size) const {
    const uint8_t* data = lease->BlobData(ObjectID(id), offset, size);
    if (!data) {
      ThrowInvalid("blob " + ObjectID(id).ToString() +
                   " lies outside the arena");
    }
    return Blob(ObjectID(id), data, size, lease);
  }
};

// The C++ client plus the Python-facing conversions.
class PyClient : public std::enable_shared_from_this<PyClient> {
 public:
  static std::shared_ptr<PyClient> Connect(const std::string& socket) {
    auto client = Unwrap(WithoutGil([&] { return Client::Connect(socket); }));
    return std::shared_ptr<PyClient>(new PyClient(std::move(client)));
  }
  // A client of the daemon whose RPC server listens at `endpoint`
  // (Client::ConnectRpc): gets copy the bytes into client buffers, which
  // the returned values view (read-only) and keep alive.
  static std::shared_ptr<PyClient> ConnectRpc(const std::string& endpoint,
                                              const std::string& token) {
    auto client =
        Unwrap(WithoutGil([&] { return Client::ConnectRpc(endpoint, token); }));
    return std::shared_ptr<PyClient>(new PyClient(std::move(client)));
  }

  Client& client() { return *client_; }

  // A buffer of `size` zero bytes for an inline writer, reusing the one
  // the last writer gave back (under the GIL, as writers are made and
  // dropped). A put of a small value is mostly a round trip: a fresh
  // malloc of its bytes each time would often be fresh pages, and a first
  // touch costs ~10 us a page on a VM with shadow paging.
  std::vector<uint8_t> TakeInlineBuffer(uint64_t size) {
    std::vector<uint8_t> buffer = std::move(spare_inline_);
    spare_inline_ = {};
    buffer.assign(size, 0);  // zeros: no byte of the last put leaks
    return buffer;
  }
  // Keeps `buffer` for the next inline writer (the larger one, up to
  // kMaxSpareInline bytes).
  void GiveBackInlineBuffer(std::vector<uint8_t> buffer) {
    if (buffer.capacity() <= kMaxSpareInline &&
        buffer.capacity() > spare_inline_.capacity()) {
      spare_inline_ = std::move(buffer);
    }
  }

  std::unique_ptr<PyBlobWriter> CreateBlob(uint64_t size) {
    auto writer = Unwrap(WithoutGil([&] { return client_->CreateBlob(size); }));
    return std::make_unique<PyBlobWriter>(shared_from_this(),
                                          std::move(writer));
  }

  // A writer of the spare blob the daemon gave this client with an earlier
  // put, if it holds at least `size` (> 0) bytes; it is then no longer the
  // spare. None otherwise (and always for a remote client).
  std::unique_ptr<PyBlobWriter> TakeSpareBlob(uint64_t size) {
    SettleDeferred();
    if (!spare_ || size == 0 || spare_->size < size) return nullptr;
    auto writer = WriterOf(*spare_);
    taken_spare_ = *spare_;
    spare_.reset();
    return std::make_unique<PyBlobWriter>(shared_from_this(),
                                          std::move(writer));
  }
  // Bytes of the spare blob held (0: none), once the replies of earlier
  // puts are in.
  uint64_t spare_blob_size() {
    SettleDeferred();
    return spare_ ? spare_->size : 0;
  }

  // A writer of `size` bytes kept here, sent with create_object.
  std::unique_ptr<PyBlobWriter> InlineBlob(uint64_t size) {
    uint64_t limit = ClientInternals::core(*client_)->max_inline_blob();
    if (size > limit) {
      ThrowInvalid("an inline blob of " + std::to_string(size) +
                   " bytes exceeds the daemon's limit of " +
                   std::to_string(limit));
    }
    return std::make_unique<PyBlobWriter>(shared_from_this(), size);
  }

  // Creates the object described by `tree` (docs/format.md) in one round
  // trip. Occurrences of `placeholder` in the tree refer to `writer`'s blob,
  // which is sealed with the object (an inline writer's bytes travel with
  // the request).
  // `used`: the bytes of `writer`'s blob the object keeps (0: all); a
  // larger blob (a spare) is trimmed to them. `spare`: ask for a spare blob
  // of that many bytes for the next put (docs/protocol.md, "Spare blobs"),
  // giving back the one held, if any.
  //
  // Without `wait`, a put into the spare blob (TakeSpareBlob) with no name
  // and no persist does not wait for its reply: the root gets the id the
  // daemon reserved with that spare, and the reply (the next spare) is
  // taken by the next put. The daemon handles the request before any later
  // one naming the id, from any connection. If it fails (not expected: the
  // tree comes from trellis's own encoders and the memory is allocated),
  // the next put raises the error, naming the object.
  ObjectID CreateObject(py::handle tree, py::handle placeholder,
                        PyBlobWriter* writer, const std::string& name,
                        bool persist, bool overwrite, uint64_t used,
                        uint64_t spare, bool wait) {
    // An inline blob is {"id": 0} in the tree (it has no id yet).
    BlobPlaceholder blob{placeholder, writer ? writer->id().value() : 0};
    if (writer) writer->CheckOpen();
    SettleDeferred();
    bool inline_data = writer && writer->is_inline();
    const std::shared_ptr<ClientCore>& core = ClientInternals::core(*client_);
    std::optional<Spare> taken = std::move(taken_spare_);
    taken_spare_.reset();
    bool deferred = !wait && writer && taken && taken->id == writer->id() &&
                    taken->object.valid() && name.empty() && !persist &&
                    !tree.is(placeholder);
    protocol::SpareBlobFields spares;
    if (deferred) spares.as = taken->object;
    if (writer && !inline_data && used > 0 && used < writer->size()) {
      spares.trim = writer->id();
      spares.trim_size = used;
    }
    if (spare > 0 && !core->remote()) {
      spares.spare = spare;
      if (spare_) {  // given back first, whatever else the request does
        spares.give_back = spare_->id;
        core->TakeOpenBlob(spare_->id);
        spare_.reset();
      }
    }
    // The request is written straight from the Python tree (no JSON DOM:
    // for a wide DataFrame that costs more than the round trip). The daemon
    // validates the tree's shape.
    // Into the body buffer of the last put (taken back below): a fresh one
    // each time would often be fresh pages (see TakeInlineBuffer).
    json body = protocol::CreateObjectBody(
        [&](std::vector<uint8_t>* out) {
          ToMsgpack(tree, writer ? &blob : nullptr, 1, out);
        },
        overwrite, persist, name, inline_data ? &writer->local() : nullptr,
        std::move(spare_body_), spares);
    if (deferred) {
      trellis::Status sent = WithoutGil([&] {
        return core->SendDeferred(protocol::MessageType::kCreateObject, body,
                                  spares.as.value());
      });
      KeepBodyBuffer(std::move(body));
      ThrowIfError(sent);
      core->TakeOpenBlob(writer->id());  // sealed with it
      writer->MarkConsumed();
      deferred_spare_sizes_.emplace(spares.as.value(), spares.spare);
      return spares.as;
    }
    // A remote writer's bytes are uploaded right before the request.
    std::vector<ObjectID> uploads;
    if (writer && !inline_data) uploads.push_back(writer->id());
    Result<json> called = WithoutGil([&] {
      return core->CallAfterUpload(protocol::MessageType::kCreateObject, body,
                                   uploads);
    });
    KeepBodyBuffer(std::move(body));
    json reply = Unwrap(std::move(called));
    if (writer) {
      if (!inline_data) core->TakeOpenBlob(writer->id());  // sealed with it
      writer->MarkConsumed();
    }
    if (spares.spare > 0) KeepSpare(reply, spares.spare);
    return Unwrap(protocol::GetId(reply, "id"));
  }

  // Keeps a sent CreateObject body's buffer for the next put's (see
  // TakeInlineBuffer for why), up to kMaxSpareInline bytes.
  void KeepBodyBuffer(json&& body) {
    std::vector<uint8_t> spent = protocol::TakeEncodedBody(std::move(body));
    if (spent.capacity() <= kMaxSpareInline) spare_body_ = std::move(spent);
  }

  // Takes the replies of the puts that did not wait (CreateObject): keeps
  // the spare blob the last one granted; raises the error of the first that
  // failed, naming its object. Under the GIL.
  void SettleDeferred() {
    const std::shared_ptr<ClientCore>& core = ClientInternals::core(*client_);
    if (!core->HasDeferred()) return;
    auto replies = WithoutGil([&] { return core->TakeDeferred(); });
    trellis::Status failed;
    for (auto& [tag, reply] : replies) {
      uint64_t spare_size = 0;
      auto asked = deferred_spare_sizes_.find(tag);
      if (asked != deferred_spare_sizes_.end()) {
        spare_size = asked->second;
        deferred_spare_sizes_.erase(asked);
      }
      if (!reply.ok()) {
        if (failed.ok()) {
          failed = trellis::Status(
              reply.status().code(),
              "the put of object " + ObjectID(tag).ToString() +
                  " (which did not wait for its reply) failed: " +
                  reply.status().message());
        }
      } else if (spare_size > 0) {
        KeepSpare(*reply, spare_size);
      }
    }
    ThrowIfError(failed);
  }

  // Keeps the spare blob of `size` bytes a CreateObject reply may carry.
  void KeepSpare(const json& reply, uint64_t size) {
    auto granted = reply.find("spare");
    if (granted == reply.end()) return;  // memory was short
    auto id = protocol::GetId(*granted, "id");
    auto offset = protocol::GetUint(*granted, "offset");
    // The id reserved for the put into it (absent: that put waits).
    ObjectID object;
    if (granted->contains("object")) {
      auto reserved = protocol::GetId(*granted, "object");
      if (!reserved.ok()) {
        ThrowInvalid("malformed spare blob in a CreateObject reply");
      }
      object = *reserved;
    }
    const std::shared_ptr<ClientCore>& core = ClientInternals::core(*client_);
    if (!id.ok() || !offset.ok() || !core->arena().Range(*offset, size)) {
      ThrowInvalid("malformed spare blob in a CreateObject reply");
    }
    core->AddOpenBlob(*id);
    Spare granted_spare{*id, *offset, size, object};
    if (spare_) {
      // Another thread's put got one meanwhile: one is enough.
      auto extra = WriterOf(granted_spare);
      ThrowIfError(WithoutGil([&] { return extra->Abort(); }));
      return;
    }
    spare_ = granted_spare;
  }

  // The complete tree of `id` as nested dicts, and the lease that keeps its
  // blobs readable. One round trip. The reply's MessagePack becomes Python
  // objects directly (Client::GetMeta would build a JSON DOM first, which
  // costs more than the round trip for trees of many nodes). See
  // FromMsgpack for `frame_blocks`.
  // With `fetch`, an object another member made is copied here first.
  py::tuple GetTree(ObjectID id, bool frame_blocks, bool fetch) {
    return TreeOf(ClientInternals::core(*client_)->GetMetaBody({id}, fetch),
                  frame_blocks);
  }
  // The same for the object bound to `name`, still one round trip.
  py::tuple GetTreeByName(const std::string& name, bool frame_blocks,
                          bool fetch) {
    return TreeOf(
        ClientInternals::core(*client_)->GetMetaByNameBody({name}, fetch),
        frame_blocks);
  }

  Blob GetBlob(ObjectID id) {
    return Unwrap(WithoutGil([&] { return client_->GetBlob(id); }));
  }

  py::list ListObjects(const std::string& pattern, size_t limit) {
    auto metas = Unwrap(
        WithoutGil([&] { return client_->ListObjects(pattern, limit); }));
    py::list out;
    for (const ObjectMeta& m : metas) {
      out.append(FromJson(ObjectMetaAccess::TreeOf(m)));
    }
    return out;
  }

  std::vector<ObjectID> Delete(const std::vector<ObjectID>& ids, bool deep,
                               bool force) {
    return Unwrap(
        WithoutGil([&] { return client_->Delete(ids, deep, force); }));
  }

  void Pin(const std::vector<ObjectID>& ids) {
    ThrowIfError(WithoutGil([&] { return client_->Pin(ids); }));
  }

  void Unpin(const std::vector<ObjectID>& ids) {
    ThrowIfError(WithoutGil([&] { return client_->Unpin(ids); }));
  }

  uint64_t Evict(const std::vector<ObjectID>& ids) {
    return Unwrap(WithoutGil([&] { return client_->Evict(ids); }));
  }

  uint64_t MemoryTrim() {
    return Unwrap(WithoutGil([&] { return client_->MemoryTrim(); }));
  }

  void Persist(ObjectID id) {
    ThrowIfError(WithoutGil([&] { return client_->Persist(id); }));
  }

  void PutName(ObjectID id, const std::string& name, bool overwrite) {
    ThrowIfError(
        WithoutGil([&] { return client_->PutName(id, name, overwrite); }));
  }

  // timeout_ms 0: wait without limit.
  ObjectID GetName(const std::string& name, bool wait, uint64_t timeout_ms) {
    return Unwrap(WithoutGil([&] {
      return client_->GetName(name, wait,
                              std::chrono::milliseconds(timeout_ms));
    }));
  }

  void DropName(const std::string& name) {
    ThrowIfError(WithoutGil([&] { return client_->DropName(name); }));
  }

  std::vector<std::pair<std::string, ObjectID>> ListNames(
      const std::string& pattern, size_t limit) {
    return Unwrap(
        WithoutGil([&] { return client_->ListNames(pattern, limit); }));
  }

  // Every status field, by name.
  py::dict Status() {
    auto status = Unwrap(WithoutGil([&] { return client_->Status(); }));
    py::dict out;
    status.ForEachField([&](const char* name, const char*, const auto& value) {
      out[name] = value;
    });
    return out;
  }

  py::dict ClusterInfo() {
    auto info = Unwrap(WithoutGil([&] { return client_->ClusterInfo(); }));
    py::list members;
    for (const ClusterMember& m : info.members) {
      py::dict d;
      d["instance_id"] = m.instance_id;
      d["hostname"] = m.hostname;
      d["ipc_socket"] = m.ipc_socket;
      d["rpc_endpoint"] = m.rpc_endpoint;
      d["arena_size"] = m.arena_size;
      d["arena_used"] = m.arena_used;
      members.append(d);
    }
    py::dict out;
    out["cluster"] = info.cluster;
    out["backend"] = info.backend;
    out["instance_id"] = info.instance_id;
    out["members"] = members;
    return out;
  }

  // Where objects live and how big they are, by id or by name (one of the
  // two lists is empty): [{id, typename, nbytes, instance_id, here, ...}]
  // in order (docs/protocol.md, "Locate"). Fetches nothing.
  py::list Locate(const std::vector<ObjectID>& ids,
                  const std::vector<std::string>& names) {
    json body = json::object();
    if (!names.empty()) {
      body["names"] = names;
    } else {
      json array = json::array();
      for (ObjectID id : ids) array.push_back(id.value());
      body["ids"] = std::move(array);
    }
    json reply = Unwrap(WithoutGil([&] {
      return ClientInternals::core(*client_)->Call(
          protocol::MessageType::kLocate, body);
    }));
    auto objects = reply.find("objects");
    if (objects == reply.end() || !objects->is_array()) {
      ThrowIfError(Status::Invalid("Locate reply: 'objects' must be an array"));
    }
    return FromJson(*objects);
  }

  void Close() {
    WithoutGil([&] {
      client_->Close();
      return 0;
    });
  }

 private:
  // (tree, lease) from a GetMeta of one object named by `request`.
  py::tuple TreeOf(const json& request, bool frame_blocks) {
    const std::shared_ptr<ClientCore>& core = ClientInternals::core(*client_);
    std::vector<uint8_t> reply = Unwrap(WithoutGil([&] {
      return core->CallRaw(protocol::MessageType::kGetMeta, request);
    }));
    py::object body, trees;
    std::vector<ObjectID> held;
    try {
      body = FromMsgpack(reply.data(), reply.size(),
                         TreeDecodeOptions{.frame_blocks = frame_blocks});
      if (!PyDict_Check(body.ptr())) ThrowInvalid("malformed GetMeta reply");
      PyObject* held_list = PyDict_GetItemString(body.ptr(), "held");
      if (!held_list || !PyList_Check(held_list)) {
        ThrowInvalid("malformed GetMeta reply");
      }
      Py_ssize_t n = PyList_GET_SIZE(held_list);
      held.reserve(static_cast<size_t>(n));
      for (Py_ssize_t i = 0; i < n; ++i) {
        PyObject* item = PyList_GET_ITEM(held_list, i);
        if (!PyLong_Check(item)) ThrowInvalid("malformed GetMeta reply");
        unsigned long long v = PyLong_AsUnsignedLongLong(item);
        if (v == static_cast<unsigned long long>(-1) && PyErr_Occurred()) {
          PyErr_Clear();
          ThrowInvalid("malformed GetMeta reply");
        }
        held.emplace_back(v);
      }
    } catch (...) {
      // Not what the daemon sends: the stream cannot be trusted any more
      // (as ClientCore::Call does with a reply it cannot decode).
      WithoutGil([&] {
        core->Close();
        return 0;
      });
      throw;
    }
    // The holds are owned (and released on any error) from here on; a
    // remote client reads the blobs' bytes into a buffer the lease owns
    // (the tree's offsets were relocated into it).
    PyLease lease{
        Unwrap(WithoutGil([&] { return core->LeaseOfHeld(std::move(held)); }))};
    PyObject* list = PyDict_GetItemString(body.ptr(), "trees");
    if (!list || !PyList_Check(list) || PyList_GET_SIZE(list) != 1) {
      ThrowInvalid("malformed GetMeta reply");
    }
    py::handle tree = PyList_GET_ITEM(list, 0);
    ValidateTree(tree);
    return py::make_tuple(tree, std::move(lease));
  }

  explicit PyClient(std::unique_ptr<Client> client)
      : client_(std::move(client)) {}
  std::unique_ptr<Client> client_;
  // Buffers kept from the last put (see TakeInlineBuffer), up to this size.
  static constexpr size_t kMaxSpareInline = 4u << 20;
  std::vector<uint8_t> spare_inline_;
  std::vector<uint8_t> spare_body_;  // CreateObject's request body
  // The unsealed blob the daemon gave for the next put (TakeSpareBlob).
  struct Spare {
    ObjectID id;
    uint64_t offset = 0;
    uint64_t size = 0;
    ObjectID object;  // reserved for the put into it; invalid: none
  };
  std::optional<Spare> spare_;
  // The spare TakeSpareBlob handed out, for the CreateObject that uses it.
  std::optional<Spare> taken_spare_;
  // Puts that did not wait: the spare size each asked for, by object id.
  std::unordered_map<uint64_t, uint64_t> deferred_spare_sizes_;

  // A writer of `spare` (an open blob of this local client).
  std::unique_ptr<BlobWriter> WriterOf(const Spare& spare) {
    const std::shared_ptr<ClientCore>& core = ClientInternals::core(*client_);
    return std::make_unique<BlobWriter>(
        core, spare.id, core->arena().Range(spare.offset, spare.size),
        spare.size);
  }
};

PyBlobWriter::PyBlobWriter(std::shared_ptr<PyClient> client, uint64_t size)
    : client_(std::move(client)), local_(client_->TakeInlineBuffer(size)) {}

PyBlobWriter::~PyBlobWriter() {
  if (!writer_) client_->GiveBackInlineBuffer(std::move(local_));
}

Blob PyBlobWriter::Seal() {
  CheckOpen();
  if (!writer_) ThrowInvalid("an inline blob is sealed only by create_object");
  open_ = false;
  ObjectID id = Unwrap(WithoutGil([&] { return writer_->Seal(); }));
  return client_->GetBlob(id);
}

ObjectID ParseId(const std::string& text) {
  return Unwrap(ObjectID::FromString(text));
}

// A 1-d contiguous numpy view's data, checked for dtype size and length.
const uint8_t* ArrayBytes(const py::array& a, char kind, size_t item,
                          const char* what) {
  if (a.ndim() != 1 || a.dtype().kind() != kind ||
      static_cast<size_t>(a.itemsize()) != item ||
      !(a.flags() & py::array::c_style)) {
    ThrowInvalid(std::string("string column ") + what +
                 " must be a contiguous 1-d array of " + kind +
                 std::to_string(item));
  }
  return static_cast<const uint8_t*>(a.data());
}

}  // namespace
}  // namespace trellis::python

PYBIND11_MODULE(_core, m) {
  using namespace trellis;
  using namespace trellis::python;
  m.doc() = "Binding of libtrellis; use the trellis package instead.";
  RegisterErrors(m);
  RegisterFormat(m);

  py::class_<ObjectID>(m, "ObjectID", R"doc(
The 64-bit id of an object or blob. Prints as 'o' + 16 hex digits and parses
back from that text: ObjectID(str(oid)) == oid. Also built from an int.)doc")
      .def(py::init(&ParseId), py::arg("text"))
      .def(py::init<uint64_t>(), py::arg("value"))
      .def_property_readonly("value", &ObjectID::value)
      .def_property_readonly("instance_id", &ObjectID::instance_id)
      .def("__str__", &ObjectID::ToString)
      .def("__repr__",
           [](ObjectID id) { return "ObjectID('" + id.ToString() + "')"; })
      .def("__int__", &ObjectID::value)
      .def("__hash__", [](ObjectID id) { return std::hash<ObjectID>()(id); })
      .def(py::self == py::self)
      .def(py::self != py::self)
      .def(py::self < py::self)
      .def(py::pickle(
          [](ObjectID id) { return py::make_tuple(id.value()); },
          [](py::tuple t) { return ObjectID(t[0].cast<uint64_t>()); }));

  py::class_<Blob>(m, "Blob", py::buffer_protocol(), R"doc(
A read-only view of a sealed blob in shared memory; memoryview(blob) and
numpy.frombuffer(blob) read it in place. The bytes stay valid while this
object, or any view made from it, lives.)doc")
      .def_property_readonly("id", &Blob::id)
      .def_property_readonly("size", &Blob::size)
      .def_property_readonly("address",
                             [](const Blob& b) { return Address(b.data()); })
      .def("__len__", &Blob::size)
      .def("__repr__",
           [](const Blob& b) {
             return "Blob(" + b.id().ToString() + ", " +
                    std::to_string(b.size()) + " bytes)";
           })
      .def_buffer([](Blob& b) {
        return py::buffer_info(const_cast<uint8_t*>(b.data()), 1, "B", 1,
                               {static_cast<py::ssize_t>(b.size())}, {1},
                               /*readonly=*/true);
      });

  py::class_<PyBlobWriter>(m, "BlobWriter", py::buffer_protocol())
      .def_property_readonly("id", &PyBlobWriter::id)
      .def_property_readonly("size", &PyBlobWriter::size)
      .def_property_readonly("open", &PyBlobWriter::open)
      .def_property_readonly("is_inline", &PyBlobWriter::is_inline)
      .def_property_readonly("address",
                             [](PyBlobWriter& w) { return Address(w.data()); })
      .def("write", &PyBlobWriter::Write, py::arg("offset"), py::arg("array"))
      // Vineyard's BlobBuilder.copy(offset, bytes): any bytes-like object.
      .def(
          "copy",
          [](PyBlobWriter& w, uint64_t offset, const py::buffer& data) {
            w.Write(offset, py::module_::import("numpy").attr("frombuffer")(
                                data, "uint8"));
          },
          py::arg("offset"), py::arg("data"))
      // Vineyard passes its client to seal/abort (seal(client)); the writer
      // already knows its client, so the argument is accepted and unused.
      .def(
          "seal", [](PyBlobWriter& w, const py::object&) { return w.Seal(); },
          py::arg("client") = py::none())
      .def(
          "abort", [](PyBlobWriter& w, const py::object&) { w.Abort(); },
          py::arg("client") = py::none())
      .def_buffer([](PyBlobWriter& w) {
        // Writable while open; empty afterwards, so a stale view cannot
        // scribble on a sealed (immutable) blob.
        py::ssize_t n = w.open() ? static_cast<py::ssize_t>(w.size()) : 0;
        return py::buffer_info(w.data(), 1, "B", 1, {n}, {1},
                               /*readonly=*/!w.open());
      });

  py::class_<PyLease>(m, "Lease")
      .def("blob", &PyLease::MakeBlob, py::arg("id"), py::arg("offset"),
           py::arg("size"));

  py::class_<StringColumnEncoder>(m, "StringColumnEncoder")
      .def_property_readonly("length", &StringColumnEncoder::length)
      .def_property_readonly("data_bytes", &StringColumnEncoder::data_bytes)
      .def_property_readonly("offsets_bytes",
                             &StringColumnEncoder::offsets_bytes)
      .def_property_readonly("validity_bytes",
                             &StringColumnEncoder::validity_bytes)
      .def_property_readonly("null_count", &StringColumnEncoder::null_count)
      .def_property_readonly("missing", &StringColumnEncoder::missing)
      .def(
          "write",
          [](const StringColumnEncoder& e, PyBlobWriter& w, uint64_t offsets_at,
             uint64_t data_at, uint64_t validity_at) {
            w.CheckOpen();
            w.CheckRange(offsets_at, e.offsets_bytes());
            w.CheckRange(data_at, e.data_bytes());
            bool nulls = e.null_count() > 0;
            if (nulls) w.CheckRange(validity_at, e.validity_bytes());
            uint64_t total = e.offsets_bytes() + e.data_bytes() +
                             (nulls ? e.validity_bytes() : 0);
            if (w.is_inline() || total > SharedArena::kPwriteMax) {
              uint8_t* base = w.data();
              WithoutGil([&] {
                e.Write(base + offsets_at, base + data_at,
                        nulls ? base + validity_at : nullptr);
                return 0;
              });
              return;
            }
            // Encoded into a warm buffer (kept by this thread, at most
            // kPwriteMax bytes), then written to the arena the cheap way
            // (see BlobWriter::Write).
            thread_local std::vector<uint8_t> scratch;
            scratch.resize(total);
            uint8_t* offsets = scratch.data();
            uint8_t* bytes = offsets + e.offsets_bytes();
            uint8_t* validity = nulls ? bytes + e.data_bytes() : nullptr;
            WithoutGil([&] {
              e.Write(offsets, bytes, validity);
              return 0;
            });
            w.WriteBytes(offsets_at, offsets, e.offsets_bytes());
            w.WriteBytes(data_at, bytes, e.data_bytes());
            if (nulls) w.WriteBytes(validity_at, validity, e.validity_bytes());
          },
          py::arg("writer"), py::arg("offsets_at"), py::arg("data_at"),
          py::arg("validity_at"));

  m.def(
      "status_fields",
      [] {
        py::dict out;
        StoreStatus().ForEachField(
            [&](const char* name, const char* description, const auto&) {
              out[name] = description;
            });
        return out;
      },
      "The fields of Client.status(), by name: what each one means "
      "(TRELLIS_STORE_STATUS_FIELDS in include/trellis/store_status.h).");
  m.def(
      "decode_tree",
      [](py::bytes encoded, bool frame_blocks) {
        std::string_view bytes = encoded;
        py::object tree =
            FromMsgpack(reinterpret_cast<const uint8_t*>(bytes.data()),
                        bytes.size(), {.frame_blocks = frame_blocks});
        ValidateTree(tree);
        return tree;
      },
      py::arg("encoded"), py::arg("frame_blocks") = false,
      "The tree in MessagePack bytes: the full form of a node read with "
      "frame blocks, from its \"_raw\" bytes (or, with frame_blocks, as "
      "get_tree reads it).");
  m.def(
      "scan_strings",
      [](py::array values, py::handle na) -> py::object {
        auto enc = StringColumnEncoder::Scan(std::move(values), na);
        if (!enc) return py::none();
        return py::cast(std::move(*enc));
      },
      py::arg("values"), py::arg("na"),
      "A StringColumnEncoder for a 1-d object array of str (missing values: "
      "one of None, NaN or `na`), or None if it holds anything else.");
  m.def(
      "decode_strings",
      [](py::array offsets, py::array data, std::optional<py::array> validity,
         py::handle missing) {
        const auto* off = reinterpret_cast<const int64_t*>(
            ArrayBytes(offsets, 'i', 8, "offsets"));
        int64_t count = static_cast<int64_t>(offsets.shape(0)) - 1;
        if (count < 0) ThrowInvalid("string column offsets are empty");
        const uint8_t* bytes = ArrayBytes(data, 'u', 1, "data");
        const uint8_t* valid = nullptr;
        if (validity) {
          valid = ArrayBytes(*validity, 'u', 1, "validity");
          if (validity->shape(0) < (count + 7) / 8) {
            ThrowInvalid("string column validity bitmap is too short");
          }
        }
        return DecodeStrings(off, count, bytes,
                             static_cast<uint64_t>(data.shape(0)), valid,
                             missing);
      },
      py::arg("offsets"), py::arg("data"), py::arg("validity"),
      py::arg("missing"),
      "An object array of str from Arrow-layout buffers (uint8 views).");

  py::class_<PyClient, std::shared_ptr<PyClient>>(m, "Client")
      .def_static("connect", &PyClient::Connect, py::arg("socket"))
      .def_static("connect_rpc", &PyClient::ConnectRpc, py::arg("endpoint"),
                  py::arg("token") = "")
      .def_property_readonly("is_remote",
                             [](PyClient& c) { return c.client().is_remote(); })
      .def("create_blob", &PyClient::CreateBlob, py::arg("size"))
      .def("inline_blob", &PyClient::InlineBlob, py::arg("size"))
      .def("take_spare_blob", &PyClient::TakeSpareBlob, py::arg("size"))
      .def_property_readonly("spare_blob_size", &PyClient::spare_blob_size)
      .def_property_readonly(
          "replies_pending",
          [](PyClient& c) {
            return ClientInternals::core(c.client())->HasDeferred();
          })
      .def_property_readonly(
          "max_inline_blob",
          [](PyClient& c) {
            return ClientInternals::core(c.client())->max_inline_blob();
          })
      .def("create_object", &PyClient::CreateObject, py::arg("tree"),
           py::arg("placeholder"), py::arg("writer").none(true),
           py::arg("name") = "", py::arg("persist") = false,
           py::arg("overwrite") = true, py::arg("used") = 0,
           py::arg("spare") = 0, py::arg("wait") = true)
      .def("get_tree", &PyClient::GetTree, py::arg("id"),
           py::arg("frame_blocks") = false, py::arg("fetch") = false)
      .def("get_tree_by_name", &PyClient::GetTreeByName, py::arg("name"),
           py::arg("frame_blocks") = false, py::arg("fetch") = false)
      .def("get_blob", &PyClient::GetBlob, py::arg("id"))
      .def("list_objects", &PyClient::ListObjects, py::arg("pattern"),
           py::arg("limit"))
      .def("delete", &PyClient::Delete, py::arg("ids"), py::arg("deep"),
           py::arg("force"))
      .def("persist", &PyClient::Persist, py::arg("id"))
      .def("pin", &PyClient::Pin, py::arg("ids"))
      .def("unpin", &PyClient::Unpin, py::arg("ids"))
      .def("evict", &PyClient::Evict, py::arg("ids"))
      .def("memory_trim", &PyClient::MemoryTrim)
      .def("put_name", &PyClient::PutName, py::arg("id"), py::arg("name"),
           py::arg("overwrite"))
      .def("get_name", &PyClient::GetName, py::arg("name"), py::arg("wait"),
           py::arg("timeout_ms"))
      .def("drop_name", &PyClient::DropName, py::arg("name"))
      .def("list_names", &PyClient::ListNames, py::arg("pattern"),
           py::arg("limit"))
      .def("status", &PyClient::Status)
      .def("cluster_info", &PyClient::ClusterInfo)
      .def("locate", &PyClient::Locate, py::arg("ids"), py::arg("names"))
      .def("close", &PyClient::Close)
      .def_property_readonly(
          "arena_base",
          [](PyClient& c) { return Address(c.client().arena_base()); })
      .def_property_readonly(
          "arena_size", [](PyClient& c) { return c.client().arena_size(); })
      .def_property_readonly(
          "instance_id", [](PyClient& c) { return c.client().instance_id(); })
      .def_property_readonly(
          "socket", [](PyClient& c) { return c.client().socket_path(); });
}
