#include "testing/fake_spill_storage.h"

#include <cerrno>
#include <cstring>

namespace trellis::testing {

FakeSpillStorage::FakeSpillStorage(uint64_t capacity)
    : disk_(std::make_shared<Disk>()) {
  disk_->capacity = capacity;
}

Status FakeSpillStorage::Write(ObjectID id, const uint8_t* data,
                               uint64_t size) {
  Disk& disk = *disk_;
  std::string path = location() + "/" + id.ToString();
  if (disk.fail_writes > 0 || disk.used > disk.capacity ||
      size > disk.capacity - disk.used) {
    if (disk.fail_writes > 0) disk.fail_writes--;
    disk.failed_writes++;
    return Status::FromErrno("cannot write spill file " + path, ENOSPC);
  }
  uint64_t copy = disk.next_copy++;
  disk.copies[copy] = Copy{id, std::vector<uint8_t>(data, data + size)};
  disk.used += size;
  // The new copy replaces any earlier one.
  auto [it, fresh] = disk.attached.try_emplace(id, copy);
  if (!fresh) {
    Erase(disk, it->second);
    it->second = copy;
  }
  disk.writes++;
  return Status::OK();
}

Status FakeSpillStorage::Read(ObjectID id, uint8_t* data, uint64_t size) {
  Disk& disk = *disk_;
  std::string path = location() + "/" + id.ToString();
  auto it = disk.attached.find(id);
  if (it == disk.attached.end()) {
    return Status::IOError("no spill file for " + id.ToString());
  }
  if (disk.failing_reads.count(id)) {
    return Status::FromErrno("cannot read spill file " + path, EIO);
  }
  const std::vector<uint8_t>& bytes = disk.copies.at(it->second).bytes;
  if (bytes.size() < size) {
    return Status::FromErrno(
        "cannot read spill file " + path + " (file is short)", EIO);
  }
  if (size > 0) std::memcpy(data, bytes.data(), size);
  disk.reads++;
  return Status::OK();
}

std::function<void()> FakeSpillStorage::Detach(ObjectID id) {
  auto it = disk_->attached.find(id);
  if (it == disk_->attached.end()) return [] {};
  uint64_t copy = it->second;
  disk_->attached.erase(it);
  return [disk = disk_, copy] { Erase(*disk, copy); };
}

void FakeSpillStorage::RemoveAll() {
  for (const auto& [id, copy] : disk_->attached) Erase(*disk_, copy);
  disk_->attached.clear();
}

void FakeSpillStorage::Erase(Disk& disk, uint64_t copy) {
  auto it = disk.copies.find(copy);
  if (it == disk.copies.end()) return;
  disk.used -= it->second.bytes.size();
  disk.copies.erase(it);
}

void FakeSpillStorage::FailNextWrites(size_t n) { disk_->fail_writes = n; }
void FakeSpillStorage::FailReadsOf(ObjectID id) {
  disk_->failing_reads.insert(id);
}
void FakeSpillStorage::ClearReadFailure(ObjectID id) {
  disk_->failing_reads.erase(id);
}
void FakeSpillStorage::set_capacity(uint64_t capacity) {
  disk_->capacity = capacity;
}
bool FakeSpillStorage::Has(ObjectID id) const {
  return disk_->attached.count(id) > 0;
}
size_t FakeSpillStorage::copies() const { return disk_->attached.size(); }
uint64_t FakeSpillStorage::used_bytes() const { return disk_->used; }
size_t FakeSpillStorage::writes() const { return disk_->writes; }
size_t FakeSpillStorage::reads() const { return disk_->reads; }
size_t FakeSpillStorage::failed_writes() const { return disk_->failed_writes; }

}  // namespace trellis::testing
