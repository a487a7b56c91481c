// The directory spill storage on a real file system: what the store's unit
// tests take from FakeSpillStorage (errors name the file and the reason; a
// failed write leaves nothing behind; a detached copy is deleted only by its
// deleter, never a newer one) holds for the real thing. A write that fails
// for lack of room is made with RLIMIT_FSIZE, which needs no root.
#include "server/spill_storage.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <vector>

namespace trellis::server {
namespace {

namespace fs = std::filesystem;

class SpillStorageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/trellis-spill-storage.XXXXXX";
    ASSERT_TRUE(mkdtemp(tmpl));
    dir_ = tmpl;
    auto storage = MakeDirectorySpillStorage(dir_);
    ASSERT_TRUE(storage.ok()) << storage.status();
    storage_ = std::move(storage).value();
  }
  void TearDown() override {
    storage_.reset();
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }

  std::vector<fs::path> Files() const {
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(dir_))
      files.push_back(e.path());
    return files;
  }

  Status Write(ObjectID id, size_t size, uint8_t byte) {
    std::vector<uint8_t> data(size, byte);
    return storage_->Write(id, data.data(), size);
  }
  // Reads `size` bytes of `id`; true if all are `byte`.
  bool ReadsAs(ObjectID id, size_t size, uint8_t byte) {
    std::vector<uint8_t> data(size);
    Status st = storage_->Read(id, data.data(), size);
    EXPECT_TRUE(st.ok()) << st;
    return st.ok() && data == std::vector<uint8_t>(size, byte);
  }

  const ObjectID a_ = ObjectID::Make(1, 1);
  std::string dir_;
  std::unique_ptr<SpillStorage> storage_;
};

TEST_F(SpillStorageTest, AWriteReplacesTheEarlierCopy) {
  EXPECT_EQ(storage_->location(), dir_);
  ASSERT_TRUE(Write(a_, 10000, 1).ok());
  ASSERT_TRUE(Write(a_, 10000, 2).ok());
  EXPECT_EQ(Files().size(), 1u);
  EXPECT_TRUE(ReadsAs(a_, 10000, 2));
}

TEST_F(SpillStorageTest, DetachForgetsAtOnceAndDeletesOnlyThatCopy) {
  ASSERT_TRUE(Write(a_, 100, 1).ok());
  std::function<void()> deleter = storage_->Detach(a_);
  std::vector<uint8_t> data(100);
  Status gone = storage_->Read(a_, data.data(), data.size());
  EXPECT_TRUE(gone.IsIOError());
  EXPECT_NE(gone.message().find("no spill file"), std::string::npos);
  EXPECT_EQ(Files().size(), 1u);  // still on disk
  // A new copy made before the deleter runs survives it.
  ASSERT_TRUE(Write(a_, 100, 2).ok());
  deleter();
  EXPECT_EQ(Files().size(), 1u);
  EXPECT_TRUE(ReadsAs(a_, 100, 2));
  storage_->Detach(ObjectID::Make(1, 99))();  // nothing to detach: harmless
  storage_->Remove(a_);
  EXPECT_TRUE(Files().empty());
}

TEST_F(SpillStorageTest, AFailedWriteNamesTheFileAndLeavesNothingBehind) {
  struct FileSizeLimit {  // restored also when an ASSERT returns early
    rlimit saved;
    void (*handler)(int);
    explicit FileSizeLimit(rlim_t bytes) {
      getrlimit(RLIMIT_FSIZE, &saved);
      handler = std::signal(SIGXFSZ, SIG_IGN);  // EFBIG instead of a signal
      rlimit limit = {bytes, saved.rlim_max};
      setrlimit(RLIMIT_FSIZE, &limit);
    }
    ~FileSizeLimit() {
      setrlimit(RLIMIT_FSIZE, &saved);
      std::signal(SIGXFSZ, handler);
    }
  };
  Status st;
  {
    FileSizeLimit limit(4096);
    st = Write(a_, 64 << 10, 1);
  }
  ASSERT_TRUE(st.IsIOError());
  EXPECT_NE(st.message().find("cannot write spill file " + dir_),
            std::string::npos)
      << st;
  EXPECT_NE(st.message().find("File too large"), std::string::npos) << st;
  EXPECT_TRUE(Files().empty());
  std::vector<uint8_t> data(10);
  EXPECT_TRUE(storage_->Read(a_, data.data(), data.size()).IsIOError());
  ASSERT_TRUE(Write(a_, 64 << 10, 3).ok());  // room again
  EXPECT_TRUE(ReadsAs(a_, 64 << 10, 3));
}

TEST_F(SpillStorageTest, AShortFileIsAReadError) {
  ASSERT_TRUE(Write(a_, 1000, 1).ok());
  ASSERT_EQ(Files().size(), 1u);
  fs::resize_file(Files()[0], 10);
  std::vector<uint8_t> data(1000);
  Status st = storage_->Read(a_, data.data(), data.size());
  EXPECT_TRUE(st.IsIOError());
  EXPECT_NE(st.message().find("file is short"), std::string::npos) << st;
}

TEST_F(SpillStorageTest, RemoveAllAndTheDestructorLeaveAnEmptyDirectory) {
  for (uint64_t i = 1; i <= 3; ++i) {
    ASSERT_TRUE(Write(ObjectID::Make(1, i), 10, 1).ok());
  }
  storage_->RemoveAll();
  EXPECT_TRUE(Files().empty());
  ASSERT_TRUE(Write(a_, 10, 1).ok());
  storage_.reset();
  EXPECT_TRUE(Files().empty());
}

TEST(MakeDirectorySpillStorageTest, RefusesWhatCannotBeADirectory) {
  auto missing = MakeDirectorySpillStorage("/proc/no-such-dir/spill");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("cannot create spill directory"),
            std::string::npos)
      << missing.status();
  auto file = MakeDirectorySpillStorage("/proc/self/status");
  ASSERT_FALSE(file.ok());
  EXPECT_NE(file.status().message().find("is not a directory"),
            std::string::npos)
      << file.status();
  EXPECT_TRUE(MakeDirectorySpillStorage("").status().IsInvalid());
}

}  // namespace
}  // namespace trellis::server
