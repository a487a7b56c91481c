// Arena: the memfd the daemon serves, with and without huge pages.
#include "server/arena.h"

#include <gtest/gtest.h>

#include <cctype>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

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

// Whatever the kernel's policy, an arena that asks for huge pages holds
// what is written to it; it has them exactly when the policy allows.
TEST_P(ArenaTest, WritesReadBackAndDiscardZeroes) {
  const bool reserve = GetParam();
  auto arena = Arena::Create(8 << 20, reserve, /*huge_pages=*/true);
  ASSERT_TRUE(arena.ok()) << arena.status();
  Arena& a = **arena;
  EXPECT_EQ(a.huge_pages(), ShmemHugePagesOnAdvice());
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
        "shmem THP is off on this kernel (shmem_enabled policy "
        "never): the arena checked in 4 KiB pages only\n");
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
