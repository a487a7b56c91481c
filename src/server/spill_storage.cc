#include "server/spill_storage.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <mutex>
#include <unordered_set>

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
    std::string path = PathOf(id);
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
      return Status::FromErrno("cannot create spill file " + path, errno);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      files_.insert(id);
    }
    uint64_t done = 0;
    while (done < size) {
      ssize_t n = pwrite(fd, data + done, std::min(kChunk, size - done),
                         static_cast<off_t>(done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        int err = n < 0 ? errno : ENOSPC;
        close(fd);
        Remove(id);
        return Status::FromErrno("cannot write spill file " + path, err);
      }
      done += static_cast<uint64_t>(n);
    }
    if (close(fd) != 0) {
      int err = errno;
      Remove(id);
      return Status::FromErrno("cannot write spill file " + path, err);
    }
    return Status::OK();
  }

  Status Read(ObjectID id, uint8_t* data, uint64_t size) override {
    std::string path = PathOf(id);
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

  void Remove(ObjectID id) override {
    unlink(PathOf(id).c_str());
    std::lock_guard<std::mutex> lock(mutex_);
    files_.erase(id);
  }

  void RemoveAll() override {
    std::lock_guard<std::mutex> lock(mutex_);
    for (ObjectID id : files_) unlink(PathOf(id).c_str());
    files_.clear();
  }

 private:
  std::string PathOf(ObjectID id) const {
    return dir_ + "/" + id.ToString() + ".spill";
  }

  const std::string dir_;
  std::mutex mutex_;
  std::unordered_set<ObjectID> files_;  // guarded by mutex_
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
