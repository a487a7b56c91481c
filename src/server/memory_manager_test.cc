// MemoryManager against a real arena, allocator and object table, with the
// spill disk and the worker pool faked: every spill, reload and file delete
// is a job the test runs when it chooses, so the races of a real disk are
// played out deterministically.
#include "server/memory_manager.h"

#include <gtest/gtest.h>

#include <cstring>
#include <optional>

#include "testing/fake_spill_storage.h"
#include "testing/manual_executor.h"

namespace trellis::server {
namespace {

using testing::FakeSpillStorage;
using testing::ManualExecutor;

constexpr uint64_t kQuarter = 256 << 10;  // of the 1 MiB arena
constexpr ClientId kWriter = 1, kReader = 2;

bool Contains(const Status& st, const std::string& text) {
  return st.message().find(text) != std::string::npos;
}

// OutOfMemory whose message holds every one of `parts`.
::testing::AssertionResult OutOfMemorySaying(
    const Status& st, std::initializer_list<const char*> parts) {
  if (!st.IsOutOfMemory()) {
    return ::testing::AssertionFailure() << "not OutOfMemory: " << st;
  }
  for (const char* part : parts) {
    if (!Contains(st, part)) {
      return ::testing::AssertionFailure() << st << " lacks '" << part << "'";
    }
  }
  return ::testing::AssertionSuccess();
}

// A request for one blob made through WithMemory, as CreateBlobs does.
struct Allocation {
  std::optional<BlobSlot> slot;
  std::optional<Status> failed;
  bool done() const { return slot || failed; }
};

class MemoryManagerTest : public ::testing::Test {
 protected:
  void SetUp() override { Make(); }

  void Make(bool spill = true, MemoryOptions options = {1.0, 1.0}) {
    memory_.reset();
    table_.reset();
    arena_ = Arena::Create(1 << 20, false).value();
    allocator_ = std::make_unique<Allocator>(arena_->size());
    table_ = std::make_unique<ObjectTable>(allocator_.get(), 1);
    std::unique_ptr<SpillStorage> storage;
    disk_ = nullptr;
    if (spill) {
      auto fake = std::make_unique<FakeSpillStorage>();
      disk_ = fake.get();
      storage = std::move(fake);
    }
    memory_ = std::make_unique<MemoryManager>(
        options, arena_.get(), allocator_.get(), table_.get(),
        std::move(storage), "", workers_.AsRunInBackground());
    table_->AddClient(kWriter);
    table_->AddClient(kReader);
  }

  // Asks for a blob of `size`; with `seal`, it is sealed (and spillable).
  std::shared_ptr<Allocation> Allocate(uint64_t size, bool seal = true) {
    auto a = std::make_shared<Allocation>();
    memory_->WithMemory(
        MemoryNeed::Of({size}),
        [this, a, size, seal] {
          auto slots = table_->CreateBlobs(kWriter, {size});
          if (!slots.ok() && slots.status().IsOutOfMemory()) return false;
          EXPECT_FALSE(a->done()) << "attempt after it succeeded";
          if (!slots.ok()) {
            a->failed = slots.status();
            return true;
          }
          a->slot = (*slots)[0];
          if (seal) {
            EXPECT_TRUE(table_->Seal(kWriter, {a->slot->id}).ok());
          }
          return true;
        },
        [a](Status st) {
          EXPECT_FALSE(a->done()) << "failed after it was done";
          a->failed = st;
        });
    return a;
  }

  // A sealed blob of `size` bytes of `seed`, made while memory allows.
  ObjectID Put(uint64_t size, uint8_t seed) {
    auto a = Allocate(size);
    EXPECT_TRUE(a->slot) << (a->failed ? a->failed->ToString() : "waits");
    if (!a->slot) return ObjectID();
    std::memset(arena_->base() + a->slot->offset, seed, size);
    return a->slot->id;
  }

  Residence ResidenceOf(ObjectID id) { return table_->FindAny(id)->residence; }

  // Whether `id` is in memory and every byte is `seed`.
  bool Intact(ObjectID id, uint8_t seed) {
    const ObjectEntry* e = table_->FindAny(id);
    if (!e || !e->resident()) return false;
    const uint8_t* p = arena_->base() + e->offset;
    for (uint64_t i = 0; i < e->size; ++i) {
      if (p[i] != seed) return false;
    }
    return true;
  }

  size_t SpilledAmong(const std::vector<ObjectID>& ids) {
    size_t n = 0;
    for (ObjectID id : ids) n += ResidenceOf(id) == Residence::kSpilled;
    return n;
  }

  // EnsureResident's result, once called.
  std::shared_ptr<std::optional<Status>> Ensure(std::vector<ObjectID> ids) {
    auto result = std::make_shared<std::optional<Status>>();
    memory_->EnsureResident(ids, [result](Status st) { *result = st; });
    return result;
  }

  void Evict(ObjectID id) {
    std::optional<Result<uint64_t>> evicted;
    memory_->Evict({id}, [&](Result<uint64_t> r) { evicted = std::move(r); });
    workers_.RunAll();
    ASSERT_TRUE(evicted && evicted->ok());
    ASSERT_EQ(ResidenceOf(id), Residence::kSpilled);
  }

  // Four quarter blobs, seeds 1..4, the first least recently used.
  std::vector<ObjectID> FillArena() {
    std::vector<ObjectID> ids;
    for (uint8_t i = 1; i <= 4; ++i) ids.push_back(Put(kQuarter, i));
    EXPECT_EQ(allocator_->free_bytes(), 0u);
    return ids;
  }

  ManualExecutor workers_;
  std::unique_ptr<Arena> arena_;
  std::unique_ptr<Allocator> allocator_;
  std::unique_ptr<ObjectTable> table_;
  FakeSpillStorage* disk_ = nullptr;  // owned by memory_
  std::unique_ptr<MemoryManager> memory_;
};

TEST_F(MemoryManagerTest, ARequestThatFitsIsServedAtOnce) {
  auto a = Allocate(kQuarter);
  EXPECT_TRUE(a->slot);
  EXPECT_EQ(workers_.pending(), 0u);
  EXPECT_EQ(memory_->waiting_requests(), 0u);
}

TEST_F(MemoryManagerTest, WithoutSpillStorageFailsAtOnceAndSaysWhy) {
  Make(/*spill=*/false);
  FillArena();
  auto a = Allocate(kQuarter);
  ASSERT_TRUE(a->failed);
  EXPECT_TRUE(OutOfMemorySaying(
      *a->failed, {"cannot allocate 262144 bytes", "the arena is full",
                   "spilling is off (no --spill-dir)"}));
  EXPECT_EQ(memory_->counters().out_of_memory, 1u);
  std::optional<Result<uint64_t>> evicted;
  memory_->Evict({ObjectID::Make(1, 1)},
                 [&](Result<uint64_t> r) { evicted = std::move(r); });
  ASSERT_TRUE(evicted);
  EXPECT_TRUE(evicted->status().IsInvalid());
  EXPECT_TRUE(Contains(evicted->status(), "spilling is off"));
}

TEST_F(MemoryManagerTest, WaitsWhileABlobIsSpilledThenSucceeds) {
  std::vector<ObjectID> ids = FillArena();
  auto a = Allocate(kQuarter);
  EXPECT_FALSE(a->done());
  EXPECT_EQ(memory_->waiting_requests(), 1u);
  ASSERT_EQ(workers_.pending(), 1u);  // one spill, of the first blob
  EXPECT_EQ(ResidenceOf(ids[0]), Residence::kSpilling);
  workers_.RunAll();
  ASSERT_TRUE(a->slot);
  EXPECT_EQ(ResidenceOf(ids[0]), Residence::kSpilled);
  EXPECT_TRUE(disk_->Has(ids[0]));
  for (int i = 1; i < 4; ++i) EXPECT_TRUE(Intact(ids[i], i + 1));
  EXPECT_EQ(memory_->counters().spills, 1u);
  EXPECT_EQ(memory_->counters().spilled_bytes, kQuarter);
  EXPECT_EQ(memory_->waiting_requests(), 0u);
}

TEST_F(MemoryManagerTest, WaitingRequestsAreRetriedOldestFirst) {
  std::vector<ObjectID> ids = FillArena();
  auto big = Allocate(2 * kQuarter);  // spills two adjacent blobs for it
  auto small = Allocate(kQuarter);
  ASSERT_EQ(workers_.pending(), 2u);
  EXPECT_EQ(memory_->waiting_requests(), 2u);
  ASSERT_TRUE(workers_.Run(0));
  // A quarter is free, enough for `small`, but `big` is first in line.
  EXPECT_EQ(allocator_->free_bytes(), kQuarter);
  EXPECT_FALSE(big->done());
  EXPECT_FALSE(small->done());
  ASSERT_TRUE(workers_.Run(0));
  EXPECT_TRUE(big->slot);
  EXPECT_FALSE(small->done());  // now it spills for itself
  ASSERT_EQ(workers_.pending(), 1u);
  workers_.RunAll();
  EXPECT_TRUE(small->slot);
  EXPECT_EQ(memory_->counters().spills, 3u);
  EXPECT_EQ(ResidenceOf(ids[3]), Residence::kInMemory);
}

TEST_F(MemoryManagerTest, NothingSpillableFailsAtOnceSayingWhatIsHeld) {
  for (ObjectID id : FillArena())
    ASSERT_TRUE(table_->GetBlob(kReader, id).ok());
  auto a = Allocate(kQuarter);
  ASSERT_TRUE(a->failed);
  EXPECT_TRUE(OutOfMemorySaying(
      *a->failed, {"nothing more can be spilled",
                   "1048576 held by live readers", "spilling to fake-disk"}));
  EXPECT_EQ(workers_.pending(), 0u);
  EXPECT_EQ(memory_->waiting_requests(), 0u);
}

TEST_F(MemoryManagerTest, AFullDiskFailsEveryWaitingRequestAndLosesNothing) {
  std::vector<ObjectID> ids = FillArena();
  disk_->set_capacity(0);
  auto first = Allocate(kQuarter);
  auto second = Allocate(kQuarter);
  workers_.RunAll();
  for (const auto& a : {first, second}) {
    ASSERT_TRUE(a->failed);
    EXPECT_TRUE(OutOfMemorySaying(*a->failed,
                                  {"spilling failed: cannot write spill file",
                                   "No space left on device"}));
  }
  EXPECT_EQ(memory_->counters().spill_failures, 1u);
  EXPECT_EQ(memory_->counters().out_of_memory, 2u);
  EXPECT_TRUE(Contains(Status::IOError(memory_->spill_error()),
                       "No space left on device"));
  // Nothing was dropped from memory for the failed write.
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(Intact(ids[i], i + 1)) << i;
  EXPECT_EQ(disk_->used_bytes(), 0u);
  // Room on the disk again: the next request spills afresh.
  disk_->set_capacity(1 << 20);
  auto third = Allocate(kQuarter);
  workers_.RunAll();
  EXPECT_TRUE(third->slot);
}

TEST_F(MemoryManagerTest, AFailedSpillWhileFilesAreBeingDeletedIsRetried) {
  // A disk with room for one blob. A's spill copy is still being deleted
  // (its reload detached it) when B's spill is written: the write meets a
  // full disk, and is tried again once the delete is done.
  std::vector<ObjectID> ids = FillArena();
  disk_->set_capacity(kQuarter);
  Evict(ids[0]);
  auto reloaded = Ensure({ids[0]});
  ASSERT_EQ(workers_.pending(), 1u);  // the read
  workers_.Run(0);
  ASSERT_TRUE(*reloaded && (*reloaded)->ok());
  ASSERT_TRUE(Intact(ids[0], 1));
  ASSERT_EQ(workers_.pending(), 1u);  // deleting A's copy
  EXPECT_EQ(disk_->used_bytes(), kQuarter);
  auto a = Allocate(kQuarter);
  ASSERT_EQ(workers_.pending(), 2u);  // + spilling B
  workers_.Run(1);                    // the write first: the disk is full
  EXPECT_EQ(disk_->failed_writes(), 1u);
  EXPECT_FALSE(a->done());  // not failed: a delete is under way
  workers_.RunAll();        // the delete, then the retried spill
  ASSERT_TRUE(a->slot) << (a->failed ? a->failed->ToString() : "waits");
  EXPECT_EQ(SpilledAmong(ids), 1u);
  EXPECT_EQ(memory_->counters().spill_failures, 1u);
  EXPECT_EQ(memory_->counters().spills, 2u);
}

TEST_F(MemoryManagerTest, AboveTheHighWatermarkSpillsDownToTheLow) {
  Make(/*spill=*/true, {0.5, 0.25});
  Put(kQuarter, 1);
  Put(kQuarter, 2);
  EXPECT_EQ(workers_.pending(), 0u);  // at the high watermark, not above
  Put(kQuarter, 3);
  EXPECT_EQ(workers_.pending(), 2u);
  workers_.RunAll();
  EXPECT_EQ(allocator_->used(), kQuarter);
  EXPECT_EQ(memory_->counters().spills, 2u);
}

TEST_F(MemoryManagerTest, ConcurrentRequestsShareOneReload) {
  ObjectID id = Put(kQuarter, 9);
  Evict(id);
  EXPECT_EQ(allocator_->used(), 0u);
  auto first = Ensure({id});
  auto second = Ensure({id});
  EXPECT_FALSE(*first);
  ASSERT_EQ(workers_.pending(), 1u);
  workers_.RunAll();
  ASSERT_TRUE(*first && (*first)->ok());
  ASSERT_TRUE(*second && (*second)->ok());
  EXPECT_EQ(disk_->reads(), 1u);
  EXPECT_TRUE(Intact(id, 9));
  EXPECT_EQ(memory_->counters().reloads, 1u);
  EXPECT_EQ(disk_->used_bytes(), 0u);  // the copy was deleted
  EXPECT_EQ(allocator_->used(), kQuarter);
}

TEST_F(MemoryManagerTest, BlobsStayInMemoryUntilThenReturns) {
  ObjectID id = Put(kQuarter, 5);
  uint32_t pins_inside = 0;
  memory_->EnsureResident({id}, [&](Status st) {
    EXPECT_TRUE(st.ok());
    pins_inside = table_->FindAny(id)->transient_pins;
  });
  EXPECT_EQ(pins_inside, 1u);
  EXPECT_EQ(table_->FindAny(id)->transient_pins, 0u);
}

TEST_F(MemoryManagerTest, AReadErrorLeavesTheBlobSpilledAndIsReported) {
  ObjectID id = Put(kQuarter, 4);
  Evict(id);
  disk_->FailReadsOf(id);
  auto first = Ensure({id});
  workers_.RunAll();
  ASSERT_TRUE(*first);
  EXPECT_TRUE((*first)->IsIOError());
  EXPECT_TRUE(Contains(**first, "Input/output error")) << **first;
  EXPECT_EQ(ResidenceOf(id), Residence::kSpilled);
  EXPECT_EQ(allocator_->used(), 0u);  // the reload's memory is freed
  EXPECT_EQ(memory_->counters().reload_failures, 1u);
  disk_->ClearReadFailure(id);
  auto second = Ensure({id});
  workers_.RunAll();
  ASSERT_TRUE(*second && (*second)->ok());
  EXPECT_TRUE(Intact(id, 4));
}

TEST_F(MemoryManagerTest, AReloadThatDoesNotFitSpillsAColdBlobFirst) {
  std::vector<ObjectID> ids = FillArena();
  Evict(ids[0]);
  ObjectID fifth = Put(kQuarter, 5);  // the arena is full again
  auto reloaded = Ensure({ids[0]});
  EXPECT_FALSE(*reloaded);
  workers_.RunAll();
  ASSERT_TRUE(*reloaded && (*reloaded)->ok());
  EXPECT_TRUE(Intact(ids[0], 1));
  ids.push_back(fifth);
  EXPECT_EQ(SpilledAmong(ids), 1u);  // one of the others made room
}

TEST_F(MemoryManagerTest, EvictRefusesHeldBlobsAndReportsBytes) {
  ObjectID held = Put(kQuarter, 1);
  ObjectID cold = Put(kQuarter, 2);
  ASSERT_TRUE(table_->GetBlob(kReader, held).ok());
  std::optional<Result<uint64_t>> r;
  memory_->Evict({held}, [&](Result<uint64_t> x) { r = std::move(x); });
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->status().IsInvalid());
  EXPECT_TRUE(Contains(r->status(), "held by 1 reader"));
  r.reset();
  memory_->Evict({cold}, [&](Result<uint64_t> x) { r = std::move(x); });
  EXPECT_FALSE(r);  // the write is under way
  workers_.RunAll();
  ASSERT_TRUE(r && r->ok());
  EXPECT_EQ(**r, kQuarter);
  r.reset();
  memory_->Evict({cold}, [&](Result<uint64_t> x) { r = std::move(x); });
  ASSERT_TRUE(r && r->ok());  // already spilled: nothing to write
  EXPECT_EQ(**r, 0u);
}

TEST_F(MemoryManagerTest, FreeingASpilledBlobDeletesItsCopyOffTheLoop) {
  ObjectID id = Put(kQuarter, 1);
  Evict(id);
  ASSERT_TRUE(table_->Delete({id}, true, false).ok());
  EXPECT_FALSE(disk_->Has(id));              // forgotten at once
  EXPECT_EQ(disk_->used_bytes(), kQuarter);  // deleted by a worker
  workers_.RunAll();
  EXPECT_EQ(disk_->used_bytes(), 0u);
}

TEST_F(MemoryManagerTest, ABlobGottenDuringItsSlowSpillStaysInMemory) {
  ObjectID id = Put(kQuarter, 7);
  std::optional<Result<uint64_t>> evicted;
  memory_->Evict({id}, [&](Result<uint64_t> r) { evicted = std::move(r); });
  ASSERT_EQ(workers_.pending(), 1u);  // the slow write, still under way
  ASSERT_TRUE(table_->GetBlob(kReader, id).ok());  // readable meanwhile
  workers_.RunAll();
  ASSERT_TRUE(evicted && evicted->ok());
  EXPECT_EQ(ResidenceOf(id), Residence::kInMemory);
  EXPECT_TRUE(Intact(id, 7));
  EXPECT_EQ(memory_->counters().spills, 0u);
  EXPECT_EQ(disk_->used_bytes(), 0u);  // the copy was not kept
}

}  // namespace
}  // namespace trellis::server
