#include "common/size_parse.h"

#include <gtest/gtest.h>

namespace trellis {
namespace {

TEST(ParseByteSizeTest, AcceptsPlainAndSuffixedSizes) {
  EXPECT_EQ(*ParseByteSize("1048576"), 1048576u);
  EXPECT_EQ(*ParseByteSize("512M"), 512ull << 20);
  EXPECT_EQ(*ParseByteSize("4G"), 4ull << 30);
  EXPECT_EQ(*ParseByteSize("4g"), 4ull << 30);
  EXPECT_EQ(*ParseByteSize("2KiB"), 2048u);
  EXPECT_EQ(*ParseByteSize("1T"), 1ull << 40);
}

TEST(ParseByteSizeTest, RejectsGarbageZeroAndOverflow) {
  for (const char* bad : {"", "G", "12Q", "-5M", "1.5G", "0", "0M",
                          "99999999999999999999", "20000000T"}) {
    auto r = ParseByteSize(bad);
    EXPECT_FALSE(r.ok()) << bad;
    EXPECT_TRUE(r.status().IsInvalid()) << bad;
  }
}

}  // namespace
}  // namespace trellis
