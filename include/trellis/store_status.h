// StoreStatus: what a trellisd reports about itself (Client::Status(),
// Python's trellis.status()).
//
// TRELLIS_STORE_STATUS_FIELDS is the one list of the status fields. The
// daemon's Status reply is built from it (a field the daemon does not fill
// in is a compile error: src/common/status_fields.h), the client decodes the
// reply into the StoreStatus declared from it, and the Python binding turns
// it into a dict. To add a field: add it here, then fill it in in
// Store::StatusReply (src/server/store.cc), in the same position.
#pragma once

#include <cstdint>
#include <string>

// X(type, name, description), in the order the daemon fills them in.
#define TRELLIS_STORE_STATUS_FIELDS(X)                                        \
  X(uint16_t, instance_id, "the daemon's instance id (high bits of its ids)") \
  X(std::string, backend, "metadata store backend, e.g. \"local\"")           \
  X(std::string, cluster, "cluster joined (--cluster; empty: local backend)") \
  X(uint64_t, arena_size, "arena bytes")                                      \
  X(bool, reserved, "the arena was pre-faulted at start (--reserve)")         \
  X(bool, huge_pages, "the arena is in 2 MiB pages (--huge-pages)")           \
  X(uint64_t, used, "bytes allocated to blobs (64-byte granules)")            \
  X(uint64_t, free, "arena bytes not allocated")                              \
  X(uint64_t, held_bytes, "blob bytes in memory that readers hold")           \
  X(uint64_t, pinned_bytes, "blob bytes pinned in memory")                    \
  X(uint64_t, objects, "sealed composite objects")                            \
  X(uint64_t, blobs, "sealed blobs")                                          \
  X(uint64_t, unsealed_blobs, "blobs being written")                          \
  X(uint64_t, deleted_pending, "deleted, kept while readers hold them")       \
  X(uint64_t, clients, "connected clients, this one included")                \
  X(bool, spill_enabled, "spilling to disk is on (--spill-dir)")              \
  X(std::string, spill_dir, "where spilled blobs go (empty: spilling off)")   \
  X(std::string, spill_error, "why spilling is off, if it was asked for")     \
  X(double, spill_high, "spill when used exceeds this fraction of the arena") \
  X(double, spill_low, "spill until used is below this fraction")             \
  X(uint64_t, spilled_blobs, "blobs whose bytes are on disk now")             \
  X(uint64_t, spilled_bytes, "bytes on disk now")                             \
  X(uint64_t, spill_count, "blobs spilled since start")                       \
  X(uint64_t, spill_bytes_total, "bytes spilled since start")                 \
  X(uint64_t, spill_failures, "spills that failed since start")               \
  X(uint64_t, reload_count, "blobs reloaded from disk since start")           \
  X(uint64_t, reload_bytes_total, "bytes reloaded since start")               \
  X(uint64_t, reload_failures, "reloads that failed since start")             \
  X(uint64_t, out_of_memory_count, "requests refused with OutOfMemory")       \
  X(uint64_t, arena_resident_bytes, "arena bytes backed by memory now")       \
  X(uint64_t, trimmed_bytes_total, "bytes MemoryTrim returned to the OS")     \
  X(uint64_t, fetch_count, "objects fetched from other instances")            \
  X(uint64_t, fetch_bytes_total, "bytes copied by those fetches")             \
  X(uint64_t, fetch_failures, "fetches that failed since start")              \
  X(uint64_t, fetch_joined, "gets that waited for a fetch already running")

namespace trellis {

// What Client::Status() reports about the daemon: one member per entry of
// TRELLIS_STORE_STATUS_FIELDS. A field the daemon did not send (an older
// daemon) keeps its default (0, false, "").
struct StoreStatus {
#define TRELLIS_STORE_STATUS_MEMBER(type, name, description) type name{};
  TRELLIS_STORE_STATUS_FIELDS(TRELLIS_STORE_STATUS_MEMBER)
#undef TRELLIS_STORE_STATUS_MEMBER

  // Calls visit(name, description, value) for every field, in list order;
  // value is a (const) reference to the member.
  template <typename Visit>
  void ForEachField(Visit&& visit) {
#define TRELLIS_STORE_STATUS_VISIT(type, name, description) \
  visit(#name, description, name);
    TRELLIS_STORE_STATUS_FIELDS(TRELLIS_STORE_STATUS_VISIT)
  }
  template <typename Visit>
  void ForEachField(Visit&& visit) const {
    TRELLIS_STORE_STATUS_FIELDS(TRELLIS_STORE_STATUS_VISIT)
#undef TRELLIS_STORE_STATUS_VISIT
  }
};

}  // namespace trellis
