// AdaptivePoll: the event loop's poll window follows the gaps between
// events and costs nothing when they are long.
#include "server/adaptive_poll.h"

#include <gtest/gtest.h>

namespace trellis::server {
namespace {

using Micros = AdaptivePoll::Micros;

TEST(AdaptivePoll, FixedAlwaysPollsTheCap) {
  AdaptivePoll poll(Micros(300), /*adaptive=*/false);
  EXPECT_EQ(poll.window(), Micros(300));
  poll.Observe(Micros(5000));
  poll.Observe(Micros(1));
  EXPECT_EQ(poll.window(), Micros(300));
}

TEST(AdaptivePoll, StartsAsleepAndGrowsToCatchShortGaps) {
  AdaptivePoll poll(Micros(500), /*adaptive=*/true);
  EXPECT_EQ(poll.window(), Micros(0));
  poll.Observe(Micros(120));  // a poll of 240 us would have caught it
  EXPECT_EQ(poll.window(), Micros(240));
  poll.Observe(Micros(100));  // caught: unchanged
  EXPECT_EQ(poll.window(), Micros(240));
  poll.Observe(Micros(300));  // missed but within the cap: grows, capped
  EXPECT_EQ(poll.window(), Micros(500));
  poll.Observe(Micros(2));  // tiny gaps never shrink it
  EXPECT_EQ(poll.window(), Micros(500));
}

TEST(AdaptivePoll, GapsBeyondTheCapHalveItToZero) {
  AdaptivePoll poll(Micros(400), /*adaptive=*/true);
  poll.Observe(Micros(200));
  ASSERT_EQ(poll.window(), Micros(400));
  for (Micros want : {Micros(200), Micros(100), Micros(50), Micros(25),
                      Micros(12), Micros(0), Micros(0)}) {
    poll.Observe(Micros(10000));  // idle: the poll was wasted
    EXPECT_EQ(poll.window(), want);
  }
}

TEST(AdaptivePoll, AYieldThatLetAnotherTaskRunClosesTheWindow) {
  AdaptivePoll poll(Micros(500), /*adaptive=*/true);
  poll.Observe(Micros(200));
  ASSERT_EQ(poll.window(), Micros(400));
  poll.Yielded(Micros(2));  // nobody else wanted the CPU
  EXPECT_EQ(poll.window(), Micros(400));
  poll.Yielded(Micros(3000));  // a worker ran meanwhile
  EXPECT_EQ(poll.window(), Micros(0));
  poll.Observe(Micros(100));  // a short gap opens it again
  EXPECT_EQ(poll.window(), Micros(200));
  AdaptivePoll fixed(Micros(300), /*adaptive=*/false);
  fixed.Yielded(Micros(3000));
  EXPECT_EQ(fixed.window(), Micros(300));
}

TEST(AdaptivePoll, ContendedClosesAnAdaptiveWindowOnly) {
  AdaptivePoll poll(Micros(500), /*adaptive=*/true);
  poll.Observe(Micros(100));
  poll.Contended();
  EXPECT_EQ(poll.window(), Micros(0));
  AdaptivePoll fixed(Micros(300), /*adaptive=*/false);
  fixed.Contended();
  EXPECT_EQ(fixed.window(), Micros(300));
}

TEST(RunnableTasks, TheFourthFieldOfLoadavgBeforeTheSlash) {
  EXPECT_EQ(RunnableTasks("0.73 1.32 1.09 1/87 15931\n"), 1);
  EXPECT_EQ(RunnableTasks("12.00 8.50 4.10 17/1203 99"), 17);
  EXPECT_EQ(RunnableTasks(""), -1);
  EXPECT_EQ(RunnableTasks("0.73 1.32 1.09"), -1);
  EXPECT_EQ(RunnableTasks("0.73 1.32 1.09 /87 1"), -1);
  EXPECT_EQ(RunnableTasks("0.73 1.32 1.09 x/87 1"), -1);
}

// The CPU a pattern of gaps makes it burn on polls nobody answers: the sum
// of the windows that end in a sleep. Alternating short and long gaps, it
// is at most one window per long gap, and the window never exceeds the cap.
TEST(AdaptivePoll, WastesAtMostOneWindowPerLongGap) {
  const Micros cap(300);
  AdaptivePoll poll(cap, /*adaptive=*/true);
  Micros wasted(0);
  int long_gaps = 0;
  for (int i = 0; i < 1000; ++i) {
    Micros gap = i % 3 == 2 ? Micros(30000) : Micros(150);
    EXPECT_LE(poll.window(), cap);
    if (gap > poll.window()) {
      wasted += poll.window();
      long_gaps += gap > cap;
    }
    poll.Observe(gap);
  }
  EXPECT_LE(wasted.count(), long_gaps * cap.count() + cap.count());
  // Only long gaps: after a few halvings it never polls again.
  for (int i = 0; i < 20; ++i) poll.Observe(Micros(30000));
  EXPECT_EQ(poll.window(), Micros(0));
}

}  // namespace
}  // namespace trellis::server
