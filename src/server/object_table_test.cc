#include "server/object_table.h"

#include <gtest/gtest.h>

#include "trellis/object.h"

namespace trellis::server {
namespace {

class ObjectTableTest : public ::testing::Test {
 protected:
  ObjectTableTest() : allocator_(1 << 20), table_(&allocator_, 7) {
    table_.AddClient(kWriter);
    table_.AddClient(kReader);
  }

  ObjectID SealedBlob(uint64_t size, ClientId client = 1) {
    auto slots = table_.CreateBlobs(client, {size});
    EXPECT_TRUE(slots.ok());
    EXPECT_TRUE(table_.Seal(client, {(*slots)[0].id}).ok());
    return (*slots)[0].id;
  }

  // A composite {typename: T, members: {m0: ids[0], ...}}.
  ObjectID Composite(const std::vector<ObjectID>& members) {
    json tree = {{"typename", "test::T"}, {"members", json::object()}};
    for (size_t i = 0; i < members.size(); ++i) {
      tree["members"]["m" + std::to_string(i)] = {{"id", members[i].value()}};
    }
    auto id = table_.CreateObject(kWriter, tree);
    EXPECT_TRUE(id.ok()) << id.status();
    return *id;
  }

  static constexpr ClientId kWriter = 1;
  static constexpr ClientId kReader = 2;
  Allocator allocator_;
  ObjectTable table_;
};

TEST_F(ObjectTableTest, UnsealedBlobsAreInvisibleToOthers) {
  auto slots = table_.CreateBlobs(kWriter, {100});
  ASSERT_TRUE(slots.ok());
  ObjectID id = (*slots)[0].id;
  EXPECT_TRUE(table_.GetBlob(kReader, id).status().IsNotSealed());
  EXPECT_TRUE(table_.Seal(kReader, {id}).IsObjectNotFound());
  ASSERT_TRUE(table_.Seal(kWriter, {id}).ok());
  EXPECT_TRUE(table_.GetBlob(kReader, id).ok());
  EXPECT_TRUE(table_.Seal(kWriter, {id}).IsObjectExists());
}

TEST_F(ObjectTableTest, AbortAndDisconnectFreeUnsealedBlobs) {
  auto a = table_.CreateBlobs(kWriter, {1000, 2000});
  ASSERT_TRUE(a.ok());
  EXPECT_GT(allocator_.used(), 0u);
  ASSERT_TRUE(table_.Abort(kWriter, {(*a)[0].id}).ok());
  EXPECT_TRUE(table_.Abort(kReader, {(*a)[1].id}).IsObjectNotFound());
  table_.RemoveClient(kWriter);
  EXPECT_EQ(allocator_.used(), 0u);
  EXPECT_EQ(table_.Stats().unsealed_blobs, 0u);
}

TEST_F(ObjectTableTest, CreateObjectSealsReferencedBlobsAndSumsBytes) {
  auto slots = table_.CreateBlobs(kWriter, {100, 300});
  ASSERT_TRUE(slots.ok());
  ObjectID root = Composite({(*slots)[0].id, (*slots)[1].id});
  std::vector<ObjectID> held;
  auto tree = table_.GetTree(kReader, root, &held);
  ASSERT_TRUE(tree.ok());
  EXPECT_EQ((*tree)["nbytes"], 400u);
  EXPECT_EQ((*tree)["members"]["m1"]["typename"], kBlobTypeName);
  EXPECT_EQ(held.size(), 2u);  // the blobs; composite nodes are not held
  EXPECT_TRUE(table_.GetBlob(kReader, (*slots)[0].id).ok());
}

TEST_F(ObjectTableTest, GetHoldsEachDistinctBlobOnceAndCachesTheEncoding) {
  ObjectID shared = SealedBlob(128);
  ObjectID inner = Composite({shared, shared});
  ObjectID root = Composite({inner, shared});
  std::vector<uint8_t> first, second;
  std::vector<ObjectID> held;
  ASSERT_TRUE(table_.GetTreeEncoded(kReader, root, &first, &held).ok());
  ASSERT_TRUE(table_.GetTreeEncoded(kReader, root, &second, &held).ok());
  EXPECT_EQ(held, (std::vector<ObjectID>{shared, shared}));  // once per get
  EXPECT_EQ(first, second);
  auto tree = table_.GetTree(kReader, root, nullptr);
  ASSERT_TRUE(tree.ok());
  EXPECT_EQ(json::from_msgpack(first), *tree);
  EXPECT_EQ(table_.Stats().held_bytes, 128u);
  // Deleting the whole tree leaves the held blob's bytes in place.
  ASSERT_TRUE(table_.Delete({root}, true, false).ok());
  EXPECT_EQ(allocator_.used(), 128u);
  EXPECT_TRUE(
      table_.GetTreeEncoded(kReader, root, &first, &held).IsObjectNotFound());
  ASSERT_TRUE(table_.Release(kReader, held).ok());
  EXPECT_EQ(allocator_.used(), 0u);
  EXPECT_EQ(table_.Stats().deleted_pending, 0u);
}

TEST_F(ObjectTableTest, CachedTreesFollowReloadedBlobs) {
  ObjectID blob = SealedBlob(256);
  ObjectID root = Composite({blob});
  std::vector<uint8_t> before, after;
  std::vector<ObjectID> held;
  ASSERT_TRUE(table_.GetTreeEncoded(kReader, root, &before, &held).ok());
  ASSERT_TRUE(table_.Release(kReader, held).ok());
  held.clear();
  // Spill it, occupy its old range, reload it elsewhere.
  ASSERT_EQ(table_.StartSpills(256).size(), 1u);
  ASSERT_TRUE(table_.FinishSpill(blob, true));
  ObjectID filler = SealedBlob(256);
  EXPECT_TRUE(table_.GetTreeEncoded(kReader, root, &after, &held).IsIOError());
  EXPECT_TRUE(held.empty());  // nothing held when a blob is not in memory
  auto job = table_.StartReload(blob);
  ASSERT_TRUE(job.ok());
  table_.FinishReload(blob, true);
  ASSERT_TRUE(table_.GetTreeEncoded(kReader, root, &after, &held).ok());
  json tree = json::from_msgpack(after);
  EXPECT_EQ(tree["members"]["m0"]["offset"], job->offset);
  EXPECT_EQ(json::from_msgpack(before)["members"]["m0"]["offset"],
            table_.GetTree(kReader, filler, nullptr)->at("offset"));
  EXPECT_NE(before, after);
  ASSERT_TRUE(table_.Release(kReader, held).ok());
}

TEST_F(ObjectTableTest, CreateObjectValidatesBeforeChangingAnything) {
  auto slots = table_.CreateBlobs(kWriter, {100});
  ObjectID blob = (*slots)[0].id;
  json tree = {
      {"typename", "test::T"},
      {"members", {{"ok", {{"id", blob.value()}}}, {"bad", {{"id", 999999}}}}}};
  auto r = table_.CreateObject(kWriter, tree);
  EXPECT_TRUE(r.status().IsObjectNotFound());
  // The blob was not sealed by the failed call.
  EXPECT_TRUE(table_.GetBlob(kReader, blob).status().IsNotSealed());
  // Another client's unsealed blob cannot be used.
  json foreign = {{"typename", "test::T"},
                  {"members", {{"b", {{"id", blob.value()}}}}}};
  EXPECT_TRUE(table_.CreateObject(kReader, foreign).status().IsNotSealed());
  // Malformed nodes.
  EXPECT_TRUE(
      table_.CreateObject(kWriter, json{{"fields", 1}}).status().IsInvalid());
  EXPECT_TRUE(table_.CreateObject(kWriter, json{{"typename", kBlobTypeName}})
                  .status()
                  .IsInvalid());
  EXPECT_TRUE(
      table_.CreateObject(kWriter, json{{"typename", "x"}, {"fields", 3}})
          .status()
          .IsInvalid());
}

TEST_F(ObjectTableTest, DeleteOfAMemberNeedsForce) {
  ObjectID blob = SealedBlob(128);
  ObjectID parent = Composite({blob});
  auto r = table_.Delete({blob}, false, false);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("member of 1 other"), std::string::npos);
  // Force: the blob vanishes from lookups but the parent still reads it.
  auto forced = table_.Delete({blob}, false, true);
  ASSERT_TRUE(forced.ok());
  EXPECT_TRUE(table_.GetBlob(kReader, blob).status().IsObjectNotFound());
  std::vector<ObjectID> held;
  auto tree = table_.GetTree(kReader, parent, &held);
  ASSERT_TRUE(tree.ok());
  EXPECT_EQ((*tree)["members"]["m0"]["id"], blob.value());
  EXPECT_EQ(allocator_.used(), 128u);
  ASSERT_TRUE(table_.Release(kReader, held).ok());
  // Deleting the parent releases the last reference: the bytes are freed.
  ASSERT_TRUE(table_.Delete({parent}, false, false).ok());
  EXPECT_EQ(allocator_.used(), 0u);
}

TEST_F(ObjectTableTest, DeepDeleteKeepsMembersUsedElsewhere) {
  ObjectID shared = SealedBlob(64);
  ObjectID own = SealedBlob(64);
  ObjectID a = Composite({shared, own});
  ObjectID b = Composite({shared});
  auto deleted = table_.Delete({a}, true, false);
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(deleted->size(), 2u);  // a and own
  EXPECT_TRUE(table_.GetBlob(kReader, own).status().IsObjectNotFound());
  EXPECT_TRUE(table_.GetBlob(kReader, shared).ok());
  EXPECT_EQ(allocator_.used(), 64u);
  // Shallow delete of b leaves shared alive and unreferenced.
  ASSERT_TRUE(table_.Delete({b}, false, false).ok());
  EXPECT_NE(table_.Find(shared), nullptr);
}

TEST_F(ObjectTableTest, DeepForceDeletesSharedMembersButKeepsThemForReferrers) {
  ObjectID shared = SealedBlob(64);
  ObjectID a = Composite({shared});
  ObjectID b = Composite({shared});
  ASSERT_TRUE(table_.Delete({a}, true, true).ok());
  EXPECT_EQ(table_.Find(shared), nullptr);  // invisible
  std::vector<ObjectID> held;
  ASSERT_TRUE(table_.GetTree(kReader, b, &held).ok());  // b still whole
  ASSERT_TRUE(table_.Release(kReader, held).ok());
  ASSERT_TRUE(table_.Delete({b}, true, false).ok());
  EXPECT_EQ(allocator_.used(), 0u);
  EXPECT_EQ(table_.Stats().deleted_pending, 0u);
}

TEST_F(ObjectTableTest, HeldObjectsOutliveDeleteUntilReleased) {
  ObjectID blob = SealedBlob(256);
  ASSERT_TRUE(table_.GetBlob(kReader, blob).ok());
  ASSERT_TRUE(table_.Delete({blob}, true, false).ok());
  EXPECT_EQ(table_.Find(blob), nullptr);
  EXPECT_EQ(allocator_.used(), 256u);  // the reader still maps it
  EXPECT_EQ(table_.Stats().deleted_pending, 1u);
  ASSERT_TRUE(table_.Release(kReader, {blob}).ok());
  EXPECT_EQ(allocator_.used(), 0u);
  EXPECT_TRUE(table_.Release(kReader, {blob}).IsInvalid());
}

TEST_F(ObjectTableTest, DisconnectDropsHolds) {
  ObjectID blob = SealedBlob(256);
  ObjectID parent = Composite({blob});
  std::vector<ObjectID> held;
  ASSERT_TRUE(table_.GetTree(kReader, parent, &held).ok());
  ASSERT_TRUE(table_.GetTree(kReader, parent, &held).ok());
  ASSERT_TRUE(table_.Delete({parent}, true, false).ok());
  EXPECT_EQ(allocator_.used(), 256u);
  table_.RemoveClient(kReader);
  EXPECT_EQ(allocator_.used(), 0u);
  EXPECT_EQ(table_.Stats().deleted_pending, 0u);
}

TEST_F(ObjectTableTest, DeleteIsAllOrNothing) {
  ObjectID blob = SealedBlob(64);
  auto r = table_.Delete({blob, ObjectID(12345)}, true, false);
  EXPECT_TRUE(r.status().IsObjectNotFound());
  EXPECT_NE(table_.Find(blob), nullptr);
}

TEST_F(ObjectTableTest, ListFiltersByTypeGlob) {
  SealedBlob(64);
  ObjectID c = Composite({});
  auto all = table_.List("*", 100);
  EXPECT_EQ(all.size(), 2u);
  auto tests = table_.List("test::*", 100);
  ASSERT_EQ(tests.size(), 1u);
  EXPECT_EQ(tests[0]["id"], c.value());
  EXPECT_EQ(table_.List("*", 1).size(), 1u);
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

TEST_F(ObjectTableTest, SpillsForALargeAllocationAreAdjacent) {
  constexpr uint64_t kBlob = 64 << 10;  // 16 of them fill the 1 MiB arena
  std::vector<ObjectID> blobs;
  for (int i = 0; i < 16; ++i) blobs.push_back(SealedBlob(kBlob));
  ASSERT_EQ(allocator_.free_bytes(), 0u);
  // Reading the odd blobs makes the even ones least recently used: spilling
  // by age alone would free 0 and 2, which are not adjacent.
  for (int i = 1; i < 16; i += 2) {
    ASSERT_TRUE(table_.GetBlob(kReader, blobs[i]).ok());
    ASSERT_TRUE(table_.Release(kReader, {blobs[i]}).ok());
  }
  std::vector<SpillJob> jobs = table_.StartSpillsFor(2 * kBlob, 2 * kBlob);
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_EQ(jobs[0].id, blobs[0]);
  EXPECT_EQ(jobs[1].id, blobs[1]);
  EXPECT_EQ(jobs[1].offset, jobs[0].offset + kBlob);
  for (const SpillJob& job : jobs)
    ASSERT_TRUE(table_.FinishSpill(job.id, true));
  EXPECT_EQ(allocator_.largest_free(), 2 * kBlob);

  // Free ranges count: 192 KiB needs only blob 2 next to the 128 KiB just
  // freed (blobs 4 and 6 around the freed 5 would cost twice as much).
  ASSERT_TRUE(table_.Delete({blobs[5]}, true, false).ok());
  jobs = table_.StartSpillsFor(3 * kBlob, kBlob);
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].id, blobs[2]);
  ASSERT_TRUE(table_.FinishSpill(jobs[0].id, true));
  EXPECT_EQ(allocator_.largest_free(), 3 * kBlob);
  // A range that is already free spills nothing beyond the top-up.
  EXPECT_TRUE(table_.StartSpillsFor(3 * kBlob, 0).empty());
}

}  // namespace
}  // namespace trellis::server
