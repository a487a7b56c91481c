#include "server/object_table.h"

#include <gtest/gtest.h>

#include <chrono>
#include <map>

#include "common/protocol.h"
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

TEST_F(ObjectTableTest, TrimShortensOnlyTheCreatorsUnsealedBlobs) {
  auto slots = table_.CreateBlobs(kWriter, {4096});
  ASSERT_TRUE(slots.ok());
  ObjectID id = (*slots)[0].id;
  EXPECT_TRUE(table_.Trim(kReader, id, 100).IsObjectNotFound());
  EXPECT_TRUE(table_.Trim(kWriter, id, 0).IsInvalid());
  EXPECT_TRUE(table_.Trim(kWriter, id, 4097).IsInvalid());
  ASSERT_TRUE(table_.Trim(kWriter, id, 100).ok());
  EXPECT_EQ(allocator_.used(), Allocator::AlignedSize(100));
  ObjectID root = Composite({id});  // seals it, with its new size
  std::vector<ObjectID> held;
  auto tree = table_.GetTree(kReader, root, &held);
  ASSERT_TRUE(tree.ok());
  EXPECT_EQ((*tree)["nbytes"], 100u);
  EXPECT_TRUE(table_.Trim(kWriter, id, 50).IsObjectNotFound());  // sealed
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

TEST_F(ObjectTableTest, RelocatedTreesGivePositionsInTheHeldBlobsLayout) {
  ObjectID a = SealedBlob(100);
  ObjectID b = SealedBlob(0);
  ObjectID c = SealedBlob(65);
  ObjectID inner = Composite({c, a});
  ObjectID root = Composite({a, b, inner});
  std::vector<uint8_t> first, second, cached;
  std::vector<ObjectID> held;
  uint64_t end = 0;
  ASSERT_TRUE(table_.GetTreeRelocated(kReader, root, &first, &held, &end).ok());
  EXPECT_EQ(held, (std::vector<ObjectID>{a, b, c}));
  EXPECT_EQ(end, 256u);  // a at 0, b at 128, c at 128 (b is empty)
  json tree = json::from_msgpack(first);
  EXPECT_EQ(tree["members"]["m0"]["offset"], 0u);
  EXPECT_EQ(tree["members"]["m1"]["offset"], 128u);
  EXPECT_EQ(tree["members"]["m2"]["members"]["m0"]["offset"], 128u);
  EXPECT_EQ(tree["members"]["m2"]["members"]["m1"]["offset"], 0u);
  // A second tree continues the layout where the first ended.
  ASSERT_TRUE(table_.GetTreeRelocated(kReader, c, &second, &held, &end).ok());
  EXPECT_EQ(json::from_msgpack(second)["offset"], 256u);
  EXPECT_EQ(end, 384u);
  // The cached (arena) encoding is untouched.
  ASSERT_TRUE(table_.GetTreeEncoded(kReader, root, &cached, &held).ok());
  EXPECT_EQ(json::from_msgpack(cached),
            *table_.GetTree(kReader, root, nullptr));
  EXPECT_NE(cached, first);
  ASSERT_TRUE(table_.Release(kReader, held).ok());
  EXPECT_EQ(table_.Stats().held_bytes, 0u);
  EXPECT_TRUE(
      table_.GetTreeRelocated(kReader, ObjectID(99), &first, &held, &end)
          .IsObjectNotFound());
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

// `levels` composite nodes, each holding the next as its only member, down
// to a reference to `leaf`: 2 * levels + 1 levels of MessagePack maps.
json Chain(int levels, ObjectID leaf) {
  json node = {{"id", leaf.value()}};
  for (int i = 0; i < levels; ++i) {
    node = {{"typename", "test::Level"}, {"members", {{"child", node}}}};
  }
  return node;
}

// Which depth limit applies to a fresh tree. The wire's (kMaxBodyDepth, 64
// levels of maps and arrays in a body) refuses a CreateObject body whose
// tree has 32 levels; a tree of 64 levels, where the table once checked,
// never arrives. The table refuses the deepest tree the wire lets through
// (31 levels), because the GetMeta reply carries the tree one level deeper
// than the request and no client could decode it; 30 levels are readable.
TEST_F(ObjectTableTest, TheWireLimitsFreshTreesAndTheTableWhatAReplyCarries) {
  ObjectID blob = SealedBlob(8);
  auto decode_create = [](const json& tree) {
    std::vector<uint8_t> bytes = json::to_msgpack(json{{"tree", tree}});
    return protocol::DecodeBody(bytes.data(), bytes.size());
  };
  EXPECT_TRUE(decode_create(Chain(32, blob)).status().IsInvalid());
  auto edge = decode_create(Chain(31, blob));
  ASSERT_TRUE(edge.ok()) << edge.status();
  auto refused = table_.CreateObject(kWriter, (*edge)["tree"]);
  EXPECT_TRUE(refused.status().IsInvalid()) << refused.status();
  EXPECT_NE(refused.status().message().find("nests deeper"), std::string::npos);
  EXPECT_EQ(table_.Stats().objects, 0u);  // nothing was built

  auto body = decode_create(Chain(30, blob));
  ASSERT_TRUE(body.ok());
  auto id = table_.CreateObject(kWriter, (*body)["tree"]);
  ASSERT_TRUE(id.ok()) << id.status();
  // Its GetMeta reply, built as Store::GetMeta builds it, decodes, and
  // nests one level deeper than the request did.
  std::vector<uint8_t> reply;
  std::vector<ObjectID> held;
  protocol::AppendMsgpackMapHeader(1, &reply);
  protocol::AppendMsgpackString("trees", &reply);
  protocol::AppendMsgpackArrayHeader(1, &reply);
  ASSERT_TRUE(table_.GetTreeEncoded(kReader, *id, &reply, &held).ok());
  auto decoded = protocol::DecodeBody(reply.data(), reply.size());
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(protocol::NestingDepth(*decoded),
            1 + protocol::NestingDepth(*body));
  ASSERT_TRUE(table_.Release(kReader, held).ok());
}

// Through references, an object can nest deeper than any one request: the
// table counts what the references expand to.
TEST_F(ObjectTableTest, ReferencedObjectsCountTowardsTheDepth) {
  ObjectID blob = SealedBlob(8);
  auto inner = table_.CreateObject(kWriter, Chain(20, blob));  // 41 levels
  ASSERT_TRUE(inner.ok());
  EXPECT_TRUE(table_.CreateObject(kWriter, Chain(10, *inner)).ok());  // 61
  auto deep = table_.CreateObject(kWriter, Chain(11, *inner));        // 63
  EXPECT_TRUE(deep.status().IsInvalid()) << deep.status();
  EXPECT_EQ(deep.status().message().rfind("member 'child': ", 0), 0u);
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

TEST_F(ObjectTableTest, ListSaysWhoHoldsAndPinsAnObjectsBlobs) {
  ObjectID a = SealedBlob(64), b = SealedBlob(128);
  ObjectID c = Composite({a, b});
  ASSERT_TRUE(table_.GetBlob(kReader, a).ok());  // one hold on a
  ASSERT_TRUE(table_.SetPinned({b}, true).ok());
  std::map<uint64_t, json> by_id;
  for (json& item : table_.List("*", 100)) by_id[item["id"]] = item;
  EXPECT_EQ(by_id[c.value()]["readers"], 1);
  EXPECT_EQ(by_id[c.value()]["pinned_bytes"], 128);
  EXPECT_EQ(by_id[c.value()]["spilled_bytes"], 0);
  EXPECT_EQ(by_id[c.value()]["referrers"], 0);
  EXPECT_EQ(by_id[a.value()]["referrers"], 1);
  EXPECT_EQ(by_id[a.value()]["readers"], 1);
  EXPECT_EQ(by_id[b.value()]["readers"], 0);
  int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  int64_t created = by_id[c.value()]["created_ms"].get<int64_t>();
  EXPECT_LE(created, now);
  EXPECT_GT(created, now - 60 * 1000);
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

// A tree with the offsets dropped (they are where each table put the bytes)
// and instance_id dropped (which table serves it).
json WithoutPlacement(json tree) {
  tree.erase("offset");
  tree.erase("instance_id");
  if (tree.contains("members")) {
    for (auto& [name, member] : tree["members"].items()) {
      member = WithoutPlacement(member);
    }
  }
  return tree;
}

TEST_F(ObjectTableTest, ReplicasKeepTheOriginalIdsAndShareWhatIsHere) {
  ObjectID a = SealedBlob(100);
  ObjectID b = SealedBlob(300);
  ObjectID inner = Composite({a});
  ObjectID root = Composite({a, b, inner});
  json original = *table_.GetTree(kReader, root, nullptr);

  Allocator replica_memory(1 << 20);
  ObjectTable replica(&replica_memory, 9);
  constexpr ClientId kFetch = 5;
  replica.AddClient(kFetch);
  // The blobs first, under their ids; then the tree, which seals them.
  auto slots = replica.CreateReplicaBlobs(kFetch, {{a, 100}, {b, 300}});
  ASSERT_TRUE(slots.ok()) << slots.status();
  EXPECT_EQ((*slots)[0].id, a);
  EXPECT_TRUE(replica.Find(a)->state == ObjectState::kCreated);
  auto made = replica.CreateReplica(kFetch, original);
  ASSERT_TRUE(made.ok()) << made.status();
  EXPECT_EQ(*made, root);
  json copy = *replica.GetTree(kFetch, root, nullptr);
  EXPECT_EQ(WithoutPlacement(copy), WithoutPlacement(original));
  EXPECT_EQ(copy["instance_id"], 9);
  EXPECT_EQ(replica.Find(inner)->nbytes, 100u);
  EXPECT_EQ(replica.Stats().unsealed_blobs, 0u);
  // The fetching client leaving changes nothing: the replica is sealed.
  replica.RemoveClient(kFetch);
  EXPECT_EQ(replica.Stats().objects, 2u);
  EXPECT_EQ(replica_memory.used(), 128u + 320u);  // 64-byte aligned

  // A second object of the origin sharing blob `b` and `inner`: only its new
  // blob is copied, the rest is referenced.
  ObjectID c = SealedBlob(50);
  ObjectID other = Composite({inner, b, c});
  replica.AddClient(kFetch);
  ASSERT_TRUE(replica.CreateReplicaBlobs(kFetch, {{c, 50}}).ok());
  ASSERT_TRUE(
      replica.CreateReplica(kFetch, *table_.GetTree(kReader, other, nullptr))
          .ok());
  EXPECT_EQ(replica.Find(inner)->referrers, 2u);
  EXPECT_EQ(replica.Find(b)->referrers, 2u);
  EXPECT_EQ(replica_memory.used(), 128u + 320u + 64u);
}

TEST_F(ObjectTableTest, ABadReplicaChangesNothing) {
  ObjectID a = SealedBlob(100);
  ObjectID b = SealedBlob(8);
  ObjectID root = Composite({a, b});
  json tree = *table_.GetTree(kReader, root, nullptr);
  Allocator replica_memory(1 << 20);
  ObjectTable replica(&replica_memory, 9);
  constexpr ClientId kFetch = 5;
  replica.AddClient(kFetch);

  // Ids of this instance, zero, or twice are no replicas.
  EXPECT_TRUE(replica.CreateReplicaBlobs(kFetch, {{ObjectID::Make(9, 1), 8}})
                  .status()
                  .IsInvalid());
  EXPECT_TRUE(replica.CreateReplicaBlobs(kFetch, {{ObjectID(), 8}})
                  .status()
                  .IsInvalid());
  EXPECT_TRUE(replica.CreateReplicaBlobs(kFetch, {{a, 100}, {a, 100}})
                  .status()
                  .IsObjectExists());
  EXPECT_EQ(replica_memory.used(), 0u);

  // Only `a` was copied: the tree is refused whole, naming the missing blob.
  ASSERT_TRUE(replica.CreateReplicaBlobs(kFetch, {{a, 100}}).ok());
  EXPECT_TRUE(
      replica.CreateReplicaBlobs(kFetch, {{a, 100}}).status().IsObjectExists());
  Status missing = replica.CreateReplica(kFetch, tree).status();
  EXPECT_TRUE(missing.IsObjectNotFound()) << missing;
  EXPECT_NE(missing.message().find(b.ToString()), std::string::npos);
  EXPECT_EQ(replica.Find(root), nullptr);
  // Malformed trees: a member that is no node, a composite without a type.
  json bad = tree;
  bad["members"]["m1"] = 7;
  EXPECT_TRUE(replica.CreateReplica(kFetch, bad).status().IsInvalid());
  bad = tree;
  bad.erase("typename");
  EXPECT_TRUE(replica.CreateReplica(kFetch, bad).status().IsInvalid());
  EXPECT_EQ(replica.Stats().objects, 0u);
  // The fetch is abandoned: its blobs go with it.
  replica.RemoveClient(kFetch);
  EXPECT_EQ(replica_memory.used(), 0u);
  EXPECT_EQ(replica.Find(a), nullptr);
}

}  // namespace
}  // namespace trellis::server
