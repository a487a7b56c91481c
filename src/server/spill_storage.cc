#include "server/spill_storage.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <unordered_map>

#include "common/mutex.h"

namespace trellis::server {
namespace {

// Large sequential requests: the page cache and the disk see few, big I/Os.
constexpr uint64_t kChunk = 8u << 20;

class DirectorySpillStorage final : public SpillStorage {
 public:
  explicit DirectorySpillStorage(std::string dir) : dir_(std::move(dir)) {}
  ~DirectorySpillStorage() override { RemoveAll(); }

  std::string location() const override { return dir_; }

  Status Write(ObjectID id, const uint8_t* data, uint64_t size) override {
    uint64_t generation;
    {
      MutexLock lock(&mutex_);
      generation = next_generation_++;
    }
    std::string path = PathOf(id, generation);
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
      return Status::FromErrno("cannot create spill file " + path, errno);
    uint64_t done = 0;
    int err = 0;
    while (done < size) {
      ssize_t n = pwrite(fd, data + done, std::min(kChunk, size - done),
                         static_cast<off_t>(done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        err = n < 0 ? errno : ENOSPC;
        break;
      }
      done += static_cast<uint64_t>(n);
    }
    if (close(fd) != 0 && err == 0) err = errno;
    if (err != 0) {
      unlink(path.c_str());
      return Status::FromErrno("cannot write spill file " + path, err);
    }
    // The new copy replaces any earlier one.
    std::function<void()> drop_earlier;
    {
      MutexLock lock(&mutex_);
      auto [it, fresh] = files_.try_emplace(id, generation);
      if (!fresh) {
        drop_earlier = Deleter(id, it->second);
        it->second = generation;
      }
    }
    if (drop_earlier) drop_earlier();
    return Status::OK();
  }

  Status Read(ObjectID id, uint8_t* data, uint64_t size) override {
    std::string path;
    {
      MutexLock lock(&mutex_);
      auto it = files_.find(id);
      if (it == files_.end()) {
        return Status::IOError("no spill file for " + id.ToString() + " in " +
                               dir_);
      }
      path = PathOf(id, it->second);
    }
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      return Status::FromErrno("cannot open spill file " + path, errno);
    uint64_t done = 0;
    while (done < size) {
      ssize_t n = pread(fd, data + done, std::min(kChunk, size - done),
                        static_cast<off_t>(done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        int err = n < 0 ? errno : EIO;
        close(fd);
        return Status::FromErrno("cannot read spill file " + path +
                                     (n == 0 ? " (file is short)" : ""),
                                 err);
      }
      done += static_cast<uint64_t>(n);
    }
    close(fd);
    return Status::OK();
  }

  std::function<void()> Detach(ObjectID id) override {
    MutexLock lock(&mutex_);
    auto it = files_.find(id);
    if (it == files_.end()) return [] {};
    std::function<void()> deleter = Deleter(id, it->second);
    files_.erase(it);
    return deleter;
  }

  void RemoveAll() override {
    MutexLock lock(&mutex_);
    for (const auto& [id, generation] : files_) {
      unlink(PathOf(id, generation).c_str());
    }
    files_.clear();
  }

 private:
  // Every write gets its own file name, so deleting a detached copy on a
  // worker thread can never remove a newer copy of the same blob.
  std::string PathOf(ObjectID id, uint64_t generation) const {
    return dir_ + "/" + id.ToString() + "-" + std::to_string(generation) +
           ".spill";
  }
  std::function<void()> Deleter(ObjectID id, uint64_t generation) const {
    return [path = PathOf(id, generation)] { unlink(path.c_str()); };
  }

  const std::string dir_;
  Mutex mutex_;
  uint64_t next_generation_ TRELLIS_GUARDED_BY(mutex_) = 1;
  // id -> generation of its current file
  std::unordered_map<ObjectID, uint64_t> files_ TRELLIS_GUARDED_BY(mutex_);
};

}  // namespace

Result<std::unique_ptr<SpillStorage>> MakeDirectorySpillStorage(
    const std::string& dir) {
  if (dir.empty()) return Status::Invalid("spill directory must not be empty");
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Status::FromErrno("cannot create spill directory " + dir, errno);
  }
  struct stat st;
  if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Status::IOError("spill directory " + dir + " is not a directory");
  }
  // Probe: the directory must take a file now, or spilling would only fail
  // later, in the middle of a put.
  std::string probe = dir + "/.trellis-probe";
  int fd = open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Status::FromErrno("spill directory " + dir + " is not writable",
                             errno);
  }
  char byte = 0;
  bool wrote = write(fd, &byte, 1) == 1;
  int err = errno;
  close(fd);
  unlink(probe.c_str());
  if (!wrote) {
    return Status::FromErrno("spill directory " + dir + " cannot be written",
                             err);
  }
  return std::unique_ptr<SpillStorage>(new DirectorySpillStorage(dir));
}

}  // namespace trellis::server
