#include "server/allocator.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace trellis::server {
namespace {

TEST(AllocatorTest, HandsOutAlignedDisjointRanges) {
  Allocator a(1 << 20);
  auto x = a.Allocate(1);
  auto y = a.Allocate(100);
  auto z = a.Allocate(64);
  ASSERT_TRUE(x.ok() && y.ok() && z.ok());
  EXPECT_EQ(*x % 64, 0u);
  EXPECT_EQ(*y % 64, 0u);
  EXPECT_EQ(*z % 64, 0u);
  EXPECT_GE(*y, *x + 64);
  EXPECT_GE(*z, *y + 128);
  EXPECT_EQ(a.used(), 64u + 128u + 64u);
}

TEST(AllocatorTest, OutOfMemorySaysWhatWasAskedAndWhatIsFree) {
  Allocator a(4096);
  ASSERT_TRUE(a.Allocate(4000).ok());
  auto r = a.Allocate(1000);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsOutOfMemory());
  EXPECT_NE(r.status().message().find("1000 bytes"), std::string::npos);
  EXPECT_NE(r.status().message().find("64 of 4096 bytes free"),
            std::string::npos);
}

TEST(AllocatorTest, FreedRangesAreReusedBeforeUntouchedMemory) {
  Allocator a(1 << 20);
  uint64_t first = *a.Allocate(4096);
  uint64_t second = *a.Allocate(4096);
  a.Free(first, 4096);
  uint64_t high = a.high_water();
  // A smaller request fits in the freed range: no new pages are touched.
  uint64_t again = *a.Allocate(1024);
  EXPECT_EQ(again, first);
  EXPECT_EQ(a.high_water(), high);
  (void)second;
}

TEST(AllocatorTest, PrefersTouchedRangeEvenWhenTailIsSmaller) {
  // Layout: [big freed hole][small live][tail]. The tail is a tighter fit by
  // size but mostly untouched; the allocator must pick the touched hole.
  Allocator a(1 << 20);
  uint64_t big = *a.Allocate(512 * 1024);
  uint64_t live = *a.Allocate(64);
  (void)live;
  uint64_t high = a.high_water();
  a.Free(big, 512 * 1024);
  uint64_t tail = a.capacity() - high;
  ASSERT_LT(tail, 512u * 1024);
  uint64_t got = *a.Allocate(tail - 4096);
  EXPECT_EQ(got, big);
  EXPECT_EQ(a.high_water(), high);
}

TEST(AllocatorTest, CoalescesNeighbours) {
  Allocator a(64 * 10);
  std::vector<uint64_t> offs;
  for (int i = 0; i < 10; ++i) offs.push_back(*a.Allocate(64));
  EXPECT_FALSE(a.Allocate(64).ok());
  // Free in an order that exercises merging with the previous, the next and
  // both neighbours.
  for (int i : {1, 3, 2, 0, 9, 7, 8, 5, 6, 4}) a.Free(offs[i], 64);
  EXPECT_EQ(a.used(), 0u);
  EXPECT_EQ(a.free_range_count(), 1u);
  EXPECT_TRUE(a.Allocate(64 * 10).ok());
}

TEST(AllocatorTest, ShrinkGivesBackTheTailForTheNextAllocation) {
  Allocator a(64 * 10);
  uint64_t first = *a.Allocate(64 * 8);
  uint64_t after = *a.Allocate(64 * 2);
  EXPECT_FALSE(a.Allocate(64).ok());
  a.Shrink(first, 64 * 8, 100);  // keeps 2 aligned units
  EXPECT_EQ(a.used(), 64u * 4);
  EXPECT_EQ(a.Allocate(64 * 6).value(), first + 128);  // the freed tail
  a.Shrink(after, 64 * 2, 64 * 2);                     // nothing to give back
  EXPECT_EQ(a.used(), 64u * 10);
  a.Free(first, 100);
  EXPECT_EQ(a.used(), 64u * 8);
}

// The fill test: objects of mixed random sizes fill >= 95% of the
// arena before the first out-of-memory.
TEST(AllocatorTest, MixedRandomSizesFillNinetyFivePercent) {
  const uint64_t capacity = 256ull << 20;
  Allocator a(capacity);
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<int> exponent(6, 22);  // 64 B .. 4 MiB
  while (true) {
    uint64_t size = (1ull << exponent(rng)) + rng() % 4096;
    if (!a.Allocate(size).ok()) break;
  }
  EXPECT_GE(static_cast<double>(a.used()) / capacity, 0.95);
}

// Same, after heavy churn that leaves holes all over the arena.
TEST(AllocatorTest, FillAfterChurnStillReachesNinetyFivePercent) {
  const uint64_t capacity = 256ull << 20;
  Allocator a(capacity);
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int> exponent(6, 20);
  std::vector<std::pair<uint64_t, uint64_t>> live;
  for (int round = 0; round < 20000; ++round) {
    uint64_t size = (1ull << exponent(rng)) + rng() % 1024;
    auto r = a.Allocate(size);
    if (r.ok()) live.emplace_back(*r, size);
    if (!live.empty() && (rng() % 2 == 0 || !r.ok())) {
      size_t victim = rng() % live.size();
      a.Free(live[victim].first, live[victim].second);
      live[victim] = live.back();
      live.pop_back();
    }
  }
  // Now fill with small-to-medium objects until the first failure.
  std::uniform_int_distribution<int> fill_exp(6, 16);
  while (true) {
    uint64_t size = (1ull << fill_exp(rng)) + rng() % 512;
    if (!a.Allocate(size).ok()) break;
  }
  EXPECT_GE(static_cast<double>(a.used()) / capacity, 0.95);
}

}  // namespace
}  // namespace trellis::server
