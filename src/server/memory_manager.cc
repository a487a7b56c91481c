#include "server/memory_manager.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "server/callbacks.h"

namespace trellis::server {

MemoryNeed MemoryNeed::Of(const std::vector<uint64_t>& sizes) {
  MemoryNeed need;
  for (uint64_t size : sizes) {
    need.total += Allocator::AlignedSize(size);
    need.largest = std::max(need.largest, Allocator::AlignedSize(size));
  }
  return need;
}

MemoryManager::MemoryManager(MemoryOptions options, Arena* arena,
                             Allocator* allocator, ObjectTable* table,
                             std::unique_ptr<SpillStorage> spill,
                             std::string spill_error,
                             RunInBackground run_in_background)
    : options_(options),
      arena_(arena),
      allocator_(allocator),
      table_(table),
      spill_(std::move(spill)),
      spill_error_(std::move(spill_error)),
      run_in_background_(std::move(run_in_background)) {
  table_->SetSpillFileDropper([this](ObjectID id) { DropSpillFile(id); });
}

Status MemoryManager::OutOfMemory(uint64_t bytes,
                                  const std::string& reason) const {
  TableStats stats = table_->Stats();
  std::string spill;
  if (spill_) {
    spill = "spilling to " + spill_->location();
  } else if (spill_error_.empty()) {
    spill = "spilling is off (no --spill-dir)";
  } else {
    spill = "spilling is off (" + spill_error_ + ")";
  }
  return Status::OutOfMemory(
      "cannot allocate " + std::to_string(bytes) + " bytes: " + reason +
      "; arena " + std::to_string(arena_->size()) + " bytes, " +
      std::to_string(allocator_->free_bytes()) + " free (largest free range " +
      std::to_string(allocator_->largest_free()) + "), " +
      std::to_string(stats.held_bytes) + " held by live readers, " +
      std::to_string(stats.pinned_bytes) + " pinned, " +
      std::to_string(stats.spilled_bytes) + " already spilled; " + spill);
}

std::string MemoryManager::spill_location() const {
  return spill_ ? spill_->location() : "";
}

void MemoryManager::WithMemory(MemoryNeed need, std::function<bool()> attempt,
                               std::function<void(Status)> fail) {
  background_paused_ = false;  // a new request tries spilling afresh
  if (attempt()) {
    SpillAboveHighWatermark();
    return;
  }
  if (!spill_) {
    counters_.out_of_memory++;
    return fail(OutOfMemory(need.total, "the arena is full"));
  }
  pending_.push_back({need, std::move(attempt), std::move(fail)});
  PumpPending();
}

void MemoryManager::PumpPending(bool may_spill, const std::string& reason) {
  while (!pending_.empty()) {
    PendingAlloc& head = pending_.front();
    if (head.attempt()) {
      pending_.pop_front();
      continue;
    }
    if (spills_in_flight_ > 0) return;  // their completion pumps again
    if (!may_spill) {
      FailPending(reason);
      return;
    }
    // Spill what the head lacks (with one free range for its largest blob),
    // and down to the low watermark on the way.
    uint64_t low = static_cast<uint64_t>(options_.spill_low *
                                         static_cast<double>(arena_->size()));
    uint64_t free = allocator_->free_bytes();
    uint64_t missing = head.need.total > free ? head.need.total - free : 0;
    uint64_t target = allocator_->used() + head.need.total;
    uint64_t want = std::max(missing, target > low ? target - low : 0);
    std::vector<SpillJob> jobs =
        table_->StartSpillsFor(head.need.largest, want);
    // Room enough in total, just not where the head's smaller blobs fit.
    if (jobs.empty()) jobs = table_->StartSpills(head.need.total);
    if (jobs.empty()) {
      FailPending("nothing more can be spilled");
      return;
    }
    for (const SpillJob& job : jobs) LaunchSpill(job, nullptr);
    return;
  }
  SpillAboveHighWatermark();
}

void MemoryManager::FailPending(const std::string& reason) {
  std::deque<PendingAlloc> failed;
  failed.swap(pending_);
  for (PendingAlloc& p : failed) {
    counters_.out_of_memory++;
    p.fail(OutOfMemory(p.need.total, reason));
  }
}

void MemoryManager::SpillAboveHighWatermark() {
  if (!spill_ || background_paused_) return;
  double size = static_cast<double>(arena_->size());
  uint64_t used = allocator_->used() - spill_bytes_in_flight_;
  uint64_t high = static_cast<uint64_t>(options_.spill_high * size);
  uint64_t low = static_cast<uint64_t>(options_.spill_low * size);
  if (used <= high) return;
  for (const SpillJob& job : table_->StartSpills(used - low)) {
    LaunchSpill(job, nullptr);
  }
}

void MemoryManager::LaunchSpill(const SpillJob& job,
                                std::function<void(Status)> then) {
  spills_in_flight_++;
  spill_bytes_in_flight_ += job.size;
  auto result = std::make_shared<Status>();
  const uint8_t* bytes = arena_->base() + job.offset;
  SpillStorage* storage = spill_.get();
  run_in_background_(
      [storage, job, bytes, result] {
        *result = storage->Write(job.id, bytes, job.size);
      },
      [this, job, result, then = std::move(then)] {
        OnSpillDone(job, *result, then);
      });
}

void MemoryManager::OnSpillDone(const SpillJob& job, Status written,
                                const std::function<void(Status)>& then) {
  spills_in_flight_--;
  spill_bytes_in_flight_ -= job.size;
  bool spilled = table_->FinishSpill(job.id, written.ok());
  if (written.ok()) {
    if (spilled) {
      counters_.spills++;
      counters_.spilled_bytes += job.size;
    } else {
      DropSpillFile(job.id);  // gotten, pinned or deleted meanwhile
    }
  } else {
    counters_.spill_failures++;
    spill_error_ = written.message();
    spill_failed_in_round_ = true;
    spdlog::error("spilling {} failed: {}", job.id.ToString(),
                  written.message());
  }
  if (then) then(written);
  if (spills_in_flight_ == 0 && spill_failed_in_round_) {
    spill_failed_in_round_ = false;
    if (file_deletes_in_flight_ > 0) {
      // Perhaps only short of the space those deletes are freeing: try
      // again once they are done (DropSpillFile pumps).
      retry_after_deletes_ = true;
      return;
    }
    // Do not retry forever against a full or broken disk: what fits in the
    // memory the successful spills freed goes ahead, the rest fails with
    // the reason, and later requests try spilling afresh. Until one comes,
    // the high watermark starts no spills (they would fail again at once).
    background_paused_ = true;
    PumpPending(/*may_spill=*/false, "spilling failed: " + spill_error_);
    return;
  }
  PumpPending();
}

void MemoryManager::DropSpillFile(ObjectID blob) {
  if (!spill_) return;
  // Forgotten now, deleted on a worker: unlinking a large file can take
  // milliseconds, and the reply (or the next request) need not wait for it.
  file_deletes_in_flight_++;
  run_in_background_(spill_->Detach(blob), [this] {
    if (--file_deletes_in_flight_ > 0 || !retry_after_deletes_) return;
    retry_after_deletes_ = false;
    PumpPending();
  });
}

void MemoryManager::EnsureResident(const std::vector<ObjectID>& ids,
                                   std::function<void(Status)> then) {
  auto blobs = table_->BlobsOf(ids);
  if (!blobs.ok()) return then(blobs.status());
  std::vector<ObjectID> missing;
  for (ObjectID blob : *blobs) {
    table_->AddTransientPin(blob);
    if (!table_->FindAny(blob)->resident()) missing.push_back(blob);
  }
  auto finish = [this, blobs = *blobs, then = std::move(then)](Status st) {
    then(st);
    for (ObjectID blob : blobs) table_->RemoveTransientPin(blob);
  };
  if (missing.empty()) return finish(Status::OK());
  auto join = JoinStatuses(missing.size(), std::move(finish));
  for (ObjectID blob : missing) RequestReload(blob, join);
}

void MemoryManager::RequestReload(ObjectID blob,
                                  std::function<void(Status)> then) {
  auto& waiters = reload_waiters_[blob];
  waiters.push_back(std::move(then));
  if (waiters.size() > 1) return;  // a reload is under way: wait for it
  uint64_t size = Allocator::AlignedSize(table_->FindAny(blob)->size);
  WithMemory(
      {size, size}, [this, blob] { return StartReload(blob); },
      [this, blob](Status st) { FinishReloadWaiters(blob, st); });
}

bool MemoryManager::StartReload(ObjectID blob) {
  const ObjectEntry* entry = table_->FindAny(blob);
  if (!entry || entry->residence != Residence::kSpilled) {
    FinishReloadWaiters(blob, Status::OK());  // resident, or gone
    return true;
  }
  auto job = table_->StartReload(blob);
  if (!job.ok()) return false;  // out of memory: wait for spills
  auto result = std::make_shared<Status>();
  uint8_t* bytes = arena_->base() + job->offset;
  SpillStorage* storage = spill_.get();
  run_in_background_(
      [storage, job = *job, bytes, result] {
        *result = storage->Read(job.id, bytes, job.size);
      },
      [this, job = *job, result] { OnReloadDone(job, *result); });
  return true;
}

void MemoryManager::OnReloadDone(const SpillJob& job, const Status& read) {
  table_->FinishReload(job.id, read.ok());
  if (read.ok()) {
    DropSpillFile(job.id);
    counters_.reloads++;
    counters_.reloaded_bytes += job.size;
  } else {
    counters_.reload_failures++;
    spdlog::error("reloading {} failed: {}", job.id.ToString(), read.message());
  }
  FinishReloadWaiters(job.id, read);
  PumpPending();
}

void MemoryManager::FinishReloadWaiters(ObjectID blob, const Status& status) {
  auto it = reload_waiters_.find(blob);
  if (it == reload_waiters_.end()) return;
  auto waiters = std::move(it->second);
  reload_waiters_.erase(it);
  for (auto& w : waiters) w(status);
}

void MemoryManager::Evict(const std::vector<ObjectID>& ids,
                          std::function<void(Result<uint64_t>)> done) {
  if (!spill_) {
    return done(Status::Invalid(
        spill_error_.empty()
            ? "cannot evict: spilling is off (start trellisd with --spill-dir)"
            : "cannot evict: spilling is off (" + spill_error_ + ")"));
  }
  auto jobs = table_->StartEvictions(ids);
  if (!jobs.ok()) return done(jobs.status());
  auto bytes = std::make_shared<uint64_t>(0);
  auto join = JoinStatuses(jobs->size(), [bytes, done](Status st) {
    done(st.ok() ? Result<uint64_t>(*bytes) : Result<uint64_t>(st));
  });
  for (const SpillJob& job : *jobs) {
    LaunchSpill(job, [join, bytes, size = job.size](Status st) {
      if (st.ok()) *bytes += size;
      join(st);
    });
  }
}

}  // namespace trellis::server
