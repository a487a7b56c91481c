#include "server/eviction_policy.h"

#include <gtest/gtest.h>

#include <deque>

namespace trellis::server {
namespace {

class EvictionPolicyTest : public ::testing::Test {
 protected:
  // A sealed, unheld blob in memory at `offset`, added to the policy.
  ObjectEntry& Blob(uint64_t offset, uint64_t size) {
    ObjectEntry& e = entries_.emplace_back();
    e.id = ObjectID(entries_.size());
    e.state = ObjectState::kSealed;
    e.is_blob = true;
    e.offset = offset;
    e.size = size;
    policy_.Add(e);
    return e;
  }

  // `count` blobs of `size` bytes filling the arena from offset 0, the way
  // the table lays them out (each allocated from the allocator).
  std::vector<ObjectEntry*> Fill(int count, uint64_t size) {
    std::vector<ObjectEntry*> blobs;
    for (int i = 0; i < count; ++i) {
      auto offset = allocator_.Allocate(size);
      EXPECT_EQ(*offset, i * size);
      blobs.push_back(&Blob(*offset, size));
    }
    return blobs;
  }

  static std::vector<ObjectID> Ids(const std::vector<ObjectEntry*>& entries) {
    std::vector<ObjectID> ids;
    for (const ObjectEntry* e : entries) ids.push_back(e->id);
    return ids;
  }

  std::deque<ObjectEntry> entries_;  // never moves an entry
  Allocator allocator_{16 * 64};
  EvictionPolicy policy_;
};

TEST_F(EvictionPolicyTest, ChoosesLeastRecentlyUsedFirstUntilEnoughBytes) {
  ObjectEntry& a = Blob(0, 100);
  ObjectEntry& b = Blob(128, 100);
  ObjectEntry& c = Blob(256, 100);
  policy_.Touch(a);  // order now b, c, a
  EXPECT_EQ(Ids(policy_.ChooseOldest(1000)),
            (std::vector<ObjectID>{b.id, c.id, a.id}));
  EXPECT_EQ(Ids(policy_.ChooseOldest(100)), (std::vector<ObjectID>{b.id}));
  EXPECT_EQ(Ids(policy_.ChooseOldest(101)),
            (std::vector<ObjectID>{b.id, c.id}));
  EXPECT_TRUE(policy_.ChooseOldest(0).empty());
  // Choosing changes nothing: the owner starts the spills and removes them.
  EXPECT_EQ(policy_.size(), 3u);
  policy_.Remove(b);
  policy_.Remove(b);  // no-op
  EXPECT_EQ(Ids(policy_.ChooseOldest(1)), (std::vector<ObjectID>{c.id}));
  policy_.Add(b);  // back as the most recently used
  policy_.Add(b);  // no-op
  EXPECT_EQ(policy_.size(), 3u);
  EXPECT_EQ(Ids(policy_.ChooseOldest(1000)),
            (std::vector<ObjectID>{c.id, a.id, b.id}));
}

TEST_F(EvictionPolicyTest, HeldPinnedEmptyAndBusyBlobsAreNeverChosen) {
  ObjectEntry& held = Blob(0, 64);
  held.readers = 1;
  ObjectEntry& pinned = Blob(64, 64);
  pinned.pinned = true;
  ObjectEntry& gathering = Blob(128, 64);
  gathering.transient_pins = 1;
  Blob(192, 0);  // empty: spilling it frees nothing
  ObjectEntry& deleted = Blob(256, 64);
  deleted.state = ObjectState::kDeleted;
  ObjectEntry& idle = Blob(320, 64);
  EXPECT_EQ(Ids(policy_.ChooseOldest(1000)), (std::vector<ObjectID>{idle.id}));
  held.readers = 0;  // released: a candidate again, in its old place
  EXPECT_EQ(Ids(policy_.ChooseOldest(1000)),
            (std::vector<ObjectID>{held.id, idle.id}));
  EXPECT_FALSE(EvictionPolicy::Spillable(pinned));
  idle.residence = Residence::kSpilling;
  EXPECT_FALSE(EvictionPolicy::Spillable(idle));
}

TEST_F(EvictionPolicyTest, OnlyBlobsInMemoryEnterTheOrder) {
  ObjectEntry composite;
  composite.id = ObjectID(100);
  composite.state = ObjectState::kSealed;
  policy_.Add(composite);
  ObjectEntry spilled;
  spilled.id = ObjectID(101);
  spilled.is_blob = true;
  spilled.residence = Residence::kSpilled;
  policy_.Add(spilled);
  EXPECT_EQ(policy_.size(), 0u);
  EXPECT_FALSE(composite.in_lru || spilled.in_lru);
  policy_.Touch(spilled);  // not in the order: no-op
  EXPECT_EQ(policy_.size(), 0u);
}

TEST_F(EvictionPolicyTest, ChoosesTheCheapestAdjacentRunForOneAllocation) {
  std::vector<ObjectEntry*> blobs = Fill(16, 64);
  ASSERT_EQ(allocator_.free_bytes(), 0u);
  // 192 bytes: blob 5's range is free, blob 4 is held; the cheapest run is
  // free 5 + blobs 6 and 7 (blobs 4 and 6 around it would do, but 4 stays).
  allocator_.Free(blobs[5]->offset, 64);
  policy_.Remove(*blobs[5]);
  blobs[4]->readers = 1;
  EXPECT_EQ(Ids(policy_.ChooseRange(192, allocator_)),
            (std::vector<ObjectID>{blobs[6]->id, blobs[7]->id}));
  // Without the hold, blobs 3 and 4 below the free range cost as much and
  // lie lower in the arena.
  blobs[4]->readers = 0;
  EXPECT_EQ(Ids(policy_.ChooseRange(192, allocator_)),
            (std::vector<ObjectID>{blobs[3]->id, blobs[4]->id}));
  // A free range long enough already: nothing to spill.
  EXPECT_TRUE(policy_.ChooseRange(64, allocator_).empty());
  // No run is long enough when everything else is pinned.
  for (ObjectEntry* e : blobs) e->pinned = true;
  EXPECT_TRUE(policy_.ChooseRange(128, allocator_).empty());
}

TEST_F(EvictionPolicyTest, NamedBlobsMustBeUnheldAndUnpinned) {
  ObjectEntry& a = Blob(0, 64);
  ObjectEntry& b = Blob(64, 64);
  ObjectEntry& spilled = Blob(128, 64);
  spilled.residence = Residence::kSpilled;
  ObjectEntry& empty = Blob(192, 0);
  auto chosen = EvictionPolicy::ChooseNamed({&a, &spilled, &empty, &b});
  ASSERT_TRUE(chosen.ok());
  EXPECT_EQ(Ids(*chosen), (std::vector<ObjectID>{a.id, b.id}));

  b.readers = 2;
  auto held = EvictionPolicy::ChooseNamed({&a, &b});
  EXPECT_TRUE(held.status().IsInvalid());
  EXPECT_NE(held.status().message().find("blob " + b.id.ToString() +
                                         ": it is held by 2 reader(s)"),
            std::string::npos)
      << held.status();
  b.readers = 0;
  b.transient_pins = 1;
  auto pinned = EvictionPolicy::ChooseNamed({&a, &b});
  EXPECT_TRUE(pinned.status().IsInvalid());
  EXPECT_NE(pinned.status().message().find(b.id.ToString() + ": it is pinned"),
            std::string::npos)
      << pinned.status();
  // A held blob that is already spilled is not in the way.
  spilled.readers = 1;
  EXPECT_TRUE(EvictionPolicy::ChooseNamed({&spilled}).ok());
}

TEST(CheapestRangeTest, PicksTheFewestSpilledBytesThenTheLowestOffset) {
  // free | blob | blob | free: two windows of 150 cost 100 each.
  std::vector<ArenaStretch> tie = {
      {0, 100, false}, {100, 100, true}, {200, 100, true}, {300, 50, false}};
  EXPECT_EQ(CheapestRange(tie, 150), std::vector<size_t>({1}));
  // A later window that reuses a free range beats two old blobs.
  std::vector<ArenaStretch> later = {
      {0, 100, true}, {100, 100, true}, {300, 80, false}, {380, 70, true}};
  EXPECT_EQ(CheapestRange(later, 150), std::vector<size_t>({3}));
  EXPECT_EQ(CheapestRange(later, 200), std::vector<size_t>({0, 1}));
}

TEST(CheapestRangeTest, GapsBreakWindowsAndNothingFitsIsEmpty) {
  // 100..150 is in use and stays: no 200-byte window exists.
  std::vector<ArenaStretch> gap = {{0, 100, false}, {150, 100, true}};
  EXPECT_TRUE(CheapestRange(gap, 200).empty());
  EXPECT_EQ(CheapestRange(gap, 100), std::vector<size_t>());  // free fits
  EXPECT_EQ(CheapestRange(gap, 101), std::vector<size_t>());  // no window
  std::vector<ArenaStretch> one = {{0, 64, true}};
  EXPECT_EQ(CheapestRange(one, 64), std::vector<size_t>({0}));
  EXPECT_TRUE(CheapestRange({}, 1).empty());
}

}  // namespace
}  // namespace trellis::server
