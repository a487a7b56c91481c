// Arena: the shared memory the daemon serves, with and without huge pages.
#include "server/arena.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "server/huge_tmpfs.h"

namespace trellis::server {
namespace {

constexpr const char* kNever = "always within_size advise [never] deny force";
constexpr const char* kAdvise = "always within_size [advise] never deny force";

TEST(ShmemHugePagesPolicy, TheBracketedWordDecides) {
  EXPECT_FALSE(ShmemHugePagesOnAdvice(kNever, ""));
  EXPECT_TRUE(ShmemHugePagesOnAdvice(kAdvise, ""));
  EXPECT_TRUE(ShmemHugePagesOnAdvice("[always] never", ""));
  EXPECT_TRUE(ShmemHugePagesOnAdvice("always [within_size] never", ""));
  EXPECT_TRUE(ShmemHugePagesOnAdvice("never deny [force]", ""));
  EXPECT_FALSE(ShmemHugePagesOnAdvice("never [deny] force", ""));
}

TEST(ShmemHugePagesPolicy, APerSizePolicyOverridesUnlessItInherits) {
  const char* inherit = "always [inherit] within_size advise never";
  EXPECT_TRUE(ShmemHugePagesOnAdvice(kAdvise, inherit));
  EXPECT_FALSE(ShmemHugePagesOnAdvice(kNever, inherit));
  EXPECT_TRUE(ShmemHugePagesOnAdvice(kNever, "[always] inherit never"));
  EXPECT_FALSE(ShmemHugePagesOnAdvice(kAdvise, "always inherit [never]"));
  // deny and force are top-level overrides of every size.
  EXPECT_FALSE(ShmemHugePagesOnAdvice("[deny]", "[always] inherit never"));
  EXPECT_TRUE(ShmemHugePagesOnAdvice("[force]", "always inherit [never]"));
}

TEST(ShmemHugePagesPolicy, UnreadableOrMalformedMeansNo) {
  EXPECT_FALSE(ShmemHugePagesOnAdvice("", ""));
  EXPECT_FALSE(ShmemHugePagesOnAdvice("advise", ""));  // no brackets
  EXPECT_FALSE(ShmemHugePagesOnAdvice("[advise", ""));
}

// The kB of shared memory mapped with PMDs in this process's mapping that
// starts at `base` (/proc/self/smaps), or -1 if there is no such mapping.
long ShmemPmdMappedKb(const uint8_t* base) {
  std::ifstream smaps("/proc/self/smaps");
  char start[32];
  std::snprintf(start, sizeof start, "%lx-",
                reinterpret_cast<unsigned long>(base));
  std::string line;
  bool in_it = false;
  while (std::getline(smaps, line)) {
    // A mapping's first line starts with its range in lower-case hex; its
    // fields ("Rss:", "ShmemPmdMapped:"...) with a capital.
    if (!line.empty() && std::isxdigit(line[0]) && !std::isupper(line[0])) {
      in_it = line.rfind(start, 0) == 0;
    } else if (in_it && line.rfind("ShmemPmdMapped:", 0) == 0) {
      return std::stol(line.substr(15));
    }
  }
  return -1;
}

class ArenaTest : public ::testing::TestWithParam<bool> {};

// True if shmem_enabled is deny here.
bool Denied() {
  std::ifstream in("/sys/kernel/mm/transparent_hugepage/shmem_enabled");
  std::string top((std::istreambuf_iterator<char>(in)), {});
  return ShmemHugePagesDenied(top);
}

TEST(ShmemHugePagesPolicy, DenyIsTheBracketedDeny) {
  EXPECT_TRUE(ShmemHugePagesDenied("never [deny] force"));
  EXPECT_FALSE(ShmemHugePagesDenied(kNever));
  EXPECT_FALSE(ShmemHugePagesDenied(""));
}

// The huge-page tmpfs file: sparse, unlinked, in 2 MiB pages once written,
// and its mount invisible to this process.
TEST(HugePageTmpfs, AnUnlinkedFileInHugePagesOnAMountNobodyElseSees) {
  if (Denied()) GTEST_SKIP() << "shmem_enabled is deny on this kernel";
  auto file = OpenHugePageTmpfsFile(8 << 20);
  ASSERT_TRUE(file.ok()) << file.status();
  struct stat st;
  ASSERT_EQ(fstat(file->get(), &st), 0);
  EXPECT_EQ(st.st_size, 8 << 20);
  EXPECT_EQ(st.st_nlink, 0u);
  EXPECT_EQ(st.st_blocks, 0);  // nothing allocated until written
  void* base = mmap(nullptr, 8 << 20, PROT_READ | PROT_WRITE, MAP_SHARED,
                    file->get(), 0);
  ASSERT_NE(base, MAP_FAILED);
  auto* bytes = static_cast<uint8_t*>(base);
  // A mapping is 2 MiB-aligned only if the kernel aligned it: find the
  // first aligned 2 MiB inside and fill it.
  uintptr_t aligned = (reinterpret_cast<uintptr_t>(bytes) + (2 << 20) - 1) &
                      ~uintptr_t{(2 << 20) - 1};
  std::memset(reinterpret_cast<uint8_t*>(aligned), 7, 2 << 20);
  ASSERT_EQ(fstat(file->get(), &st), 0);
  EXPECT_GE(st.st_blocks * 512, 2 << 20);
  EXPECT_GE(ShmemPmdMappedKb(bytes), 2048);
  munmap(base, 8 << 20);
  std::ifstream mounts("/proc/self/mountinfo");
  std::string all((std::istreambuf_iterator<char>(mounts)), {});
  EXPECT_EQ(all.find("trellis-arena"), std::string::npos) << all;
}

// Not root, the helper makes a user namespace of its own for the mount.
TEST(HugePageTmpfs, WorksForAnUnprivilegedUserOrSaysWhy) {
  if (Denied()) GTEST_SKIP() << "shmem_enabled is deny on this kernel";
  if (geteuid() != 0) GTEST_SKIP() << "not root: the other test is this one";
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {  // as nobody
    close(pipe_fds[0]);
    std::string message = "ok";
    if (setresgid(65534, 65534, 65534) != 0 ||
        setresuid(65534, 65534, 65534) != 0) {
      message = "cannot become nobody";
    } else {
      auto file = OpenHugePageTmpfsFile(4 << 20);
      if (!file.ok()) message = file.status().ToString();
    }
    (void)!write(pipe_fds[1], message.data(), message.size());
    _exit(0);
  }
  close(pipe_fds[1]);
  char buffer[512];
  ssize_t n = read(pipe_fds[0], buffer, sizeof buffer);
  close(pipe_fds[0]);
  waitpid(child, nullptr, 0);
  std::string message(buffer, n > 0 ? static_cast<size_t>(n) : 0);
  std::ifstream limit("/proc/sys/user/max_user_namespaces");
  long user_namespaces = 0;
  limit >> user_namespaces;
  if (user_namespaces > 0) {
    EXPECT_EQ(message, "ok");
  } else {  // switched off: the failure must say which step failed
    std::printf("user namespaces are off here; as nobody: %s\n",
                message.c_str());
    EXPECT_NE(message.find("cannot "), std::string::npos) << message;
  }
}

// Whatever the kernel's policy, an arena that asks for huge pages holds
// what is written to it; it has them unless the policy denies them or no
// tmpfs of its own could be mounted.
TEST_P(ArenaTest, WritesReadBackAndDiscardZeroes) {
  const bool reserve = GetParam();
  auto arena = Arena::Create(8 << 20, reserve, /*huge_pages=*/true);
  ASSERT_TRUE(arena.ok()) << arena.status();
  Arena& a = **arena;
  EXPECT_EQ(a.huge_pages(), ShmemHugePagesOnAdvice() ||
                                (!Denied() && OpenHugePageTmpfsFile(1).ok()));
  EXPECT_EQ(a.reserved(), reserve);
  std::vector<uint8_t> data(10000);
  for (size_t i = 0; i < data.size(); ++i)
    data[i] = static_cast<uint8_t>(i * 7);
  for (uint64_t offset : {uint64_t{0}, uint64_t{4095}, uint64_t{(2 << 20) - 17},
                          uint64_t{(8 << 20) - 10000}}) {
    ASSERT_TRUE(a.Write(offset, data.data(), data.size()).ok());
    EXPECT_EQ(std::memcmp(a.base() + offset, data.data(), data.size()), 0)
        << "at " << offset;
  }
  EXPECT_TRUE(a.Write((8 << 20) - 1, data.data(), 2).IsInvalid());
  ASSERT_TRUE(a.Discard(0, 2 << 20).ok());
  EXPECT_EQ(a.base()[4096], 0);
  if (a.huge_pages()) {
    // The 2 MiB stretches written and not discarded are mapped whole.
    EXPECT_GE(ShmemPmdMappedKb(a.base()), 2048);
  } else {
    std::printf(
        "no huge pages for shared memory here (shmem_enabled deny, or no "
        "tmpfs could be mounted): the arena checked in 4 KiB pages only\n");
  }
}

INSTANTIATE_TEST_SUITE_P(ReservedOrNot, ArenaTest, ::testing::Bool());

TEST(Arena, HugePagesOffIsFourKilobytePages) {
  auto arena = Arena::Create(4 << 20, false, /*huge_pages=*/false);
  ASSERT_TRUE(arena.ok()) << arena.status();
  EXPECT_FALSE((*arena)->huge_pages());
  uint8_t byte = 42;
  ASSERT_TRUE((*arena)->Write(3 << 20, &byte, 1).ok());
  EXPECT_EQ((*arena)->base()[3 << 20], 42);
  EXPECT_EQ(ShmemPmdMappedKb((*arena)->base()), 0);
}

}  // namespace
}  // namespace trellis::server
