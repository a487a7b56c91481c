#include "server/tree_codec.h"

#include <gtest/gtest.h>

#include <unordered_map>

#include "trellis/object.h"

namespace trellis::server {
namespace {

// The entries the codec reads, without a table around them.
class FakeEntries : public EntryLookup {
 public:
  const ObjectEntry* FindAny(ObjectID id) const override {
    auto it = map.find(id);
    return it == map.end() ? nullptr : &it->second;
  }
  std::unordered_map<ObjectID, ObjectEntry> map;
};

class TreeCodecTest : public ::testing::Test {
 protected:
  static constexpr ClientId kClient = 1;

  ObjectEntry& NewEntry() {
    ObjectID id(entries_.map.size() + 1);
    ObjectEntry& e = entries_.map[id];
    e.id = id;
    e.state = ObjectState::kSealed;
    e.creator = kClient;
    return e;
  }
  ObjectEntry& Blob(uint64_t offset, uint64_t size) {
    ObjectEntry& e = NewEntry();
    e.is_blob = true;
    e.nesting = 1;
    e.type_name = kBlobTypeName;
    e.offset = offset;
    e.size = e.nbytes = size;
    return e;
  }
  ObjectEntry& Composite(const Members& members, json fields = json::object()) {
    ObjectEntry& e = NewEntry();
    e.type_name = "test::T";
    e.fields = std::move(fields);
    e.members = members;
    e.nbytes = codec_.DistinctBlobBytes(members);
    e.nesting = codec_.Nesting(e.fields, members);
    return e;
  }
  static json Ref(const ObjectEntry& e) { return {{"id", e.id.value()}}; }
  static json Node(json members) {
    return {{"typename", "test::T"}, {"members", std::move(members)}};
  }
  // A map nesting `levels` deep: {"f": {"f": ... {}}}.
  static json NestedFields(int levels) {
    json v = json::object();
    for (int i = 1; i < levels; ++i) v = {{"f", v}};
    return v;
  }

  FakeEntries entries_;
  TreeCodec codec_{&entries_, 7};
};

TEST_F(TreeCodecTest, ValidationErrorsNameThePathToTheBadMember) {
  ObjectEntry& blob = Blob(0, 8);
  EXPECT_TRUE(codec_.Validate(kClient, Node({{"b", Ref(blob)}})).ok());

  Status missing =
      codec_.Validate(kClient, Node({{"a", Node({{"b", {{"id", 999}}}})}}));
  EXPECT_TRUE(missing.IsObjectNotFound());
  EXPECT_EQ(missing.message(), "member 'a': member 'b': member " +
                                   ObjectID(999).ToString() +
                                   " does not exist");

  blob.state = ObjectState::kDeleted;
  EXPECT_TRUE(
      codec_.Validate(kClient, Node({{"b", Ref(blob)}})).IsObjectNotFound());

  // A CREATED blob: its creator may use it, nobody else.
  blob.state = ObjectState::kCreated;
  EXPECT_TRUE(codec_.Validate(kClient, Node({{"b", Ref(blob)}})).ok());
  Status foreign = codec_.Validate(2, Node({{"b", Ref(blob)}}));
  EXPECT_TRUE(foreign.IsNotSealed());
  EXPECT_EQ(foreign.message().rfind("member 'b': member ", 0), 0u) << foreign;

  struct Case {
    json tree;
    std::string message;
  };
  const Case cases[] = {
      {Ref(blob), "the root of a new object must be a new node"},
      {json::array(), "tree node must be a map"},
      {Node({{"x", 3}}), "member 'x': tree node must be a map"},
      {Node({{"x", {{"fields", json::object()}}}}),
       "member 'x': a new tree node needs a non-empty string 'typename' (or "
       "an 'id' naming an existing object)"},
      {Node({{"x", {{"typename", ""}}}}),
       "member 'x': a new tree node needs a non-empty string 'typename' (or "
       "an 'id' naming an existing object)"},
      {Node({{"x", {{"typename", kBlobTypeName}}}}),
       "member 'x': blobs are made with CreateBlobs, not in a tree"},
      {Node({{"x", {{"typename", "test::U"}, {"fields", 1}}}}),
       "member 'x': 'fields' of a test::U node must be a map"},
      {{{"typename", "test::U"}, {"members", json::array()}},
       "'members' of a test::U node must be a map"},
  };
  for (const Case& c : cases) {
    Status st = codec_.Validate(kClient, c.tree);
    EXPECT_TRUE(st.IsInvalid()) << c.tree;
    EXPECT_EQ(st.message(), c.message) << c.tree;
  }
}

TEST_F(TreeCodecTest, NestingCountsFieldsMembersAndWhatReferencesExpandTo) {
  ObjectEntry& blob = Blob(0, 8);
  EXPECT_EQ(codec_.Nesting(json::object(), {}),
            2);  // {fields: {}, members: {}}
  EXPECT_EQ(codec_.Nesting(NestedFields(3), {}), 4);
  EXPECT_EQ(codec_.Nesting(json::object(), {{"b", blob.id}}), 3);
  ObjectEntry& inner = Composite({{"b", blob.id}});
  EXPECT_EQ(codec_.Nesting(json::object(), {{"i", inner.id}}), 5);

  // The deepest fields a root may have: its map is one level.
  const int kDeepestFields = kMaxTreeNesting - 1;
  json root = {{"typename", "test::T"}};
  root["fields"] = NestedFields(kDeepestFields);
  EXPECT_TRUE(codec_.Validate(kClient, root).ok());
  root["fields"] = NestedFields(kDeepestFields + 1);
  Status deep = codec_.Validate(kClient, root);
  EXPECT_TRUE(deep.IsInvalid());
  EXPECT_NE(deep.message().find("nests deeper"), std::string::npos) << deep;

  // A member takes two levels (its parent's map and `members`), so a member
  // may nest kMaxTreeNesting - 2 levels, however it got them.
  ObjectEntry& widest = Composite({}, NestedFields(kMaxTreeNesting - 3));
  ASSERT_EQ(widest.nesting, kMaxTreeNesting - 2);
  EXPECT_TRUE(codec_.Validate(kClient, Node({{"m", Ref(widest)}})).ok());
  ObjectEntry& deeper = Composite({}, NestedFields(kMaxTreeNesting - 2));
  Status through = codec_.Validate(kClient, Node({{"m", Ref(deeper)}}));
  EXPECT_TRUE(through.IsInvalid());
  EXPECT_EQ(through.message().rfind("member 'm': object tree nests deeper", 0),
            0u)
      << through;
}

TEST_F(TreeCodecTest, EncodeWritesWhatExpandBuilds) {
  ObjectEntry& data = Blob(4096, 100);
  ObjectEntry& spilled = Blob(0, 28);
  spilled.residence = Residence::kSpilled;
  ObjectEntry& inner = Composite({{"x", data.id}}, {{"note", "shared"}});
  ObjectEntry& root =
      Composite({{"data", data.id}, {"inner", inner.id}, {"cold", spilled.id}},
                {{"shape", {2, 3}}, {"nested", {{"a", {1, 2}}}}});

  json tree = codec_.Expand(root);
  EXPECT_EQ(tree["typename"], "test::T");
  EXPECT_EQ(tree["id"], root.id.value());
  EXPECT_EQ(tree["nbytes"], 128u);  // data counted once
  EXPECT_EQ(tree["instance_id"], 7u);
  EXPECT_EQ(tree["fields"]["shape"], json({2, 3}));
  EXPECT_EQ(tree["members"]["data"]["offset"], 4096u);
  EXPECT_EQ(tree["members"]["inner"]["members"]["x"]["id"], data.id.value());
  EXPECT_FALSE(tree["members"]["cold"].contains("offset"));  // not in memory
  EXPECT_FALSE(tree["members"]["data"].contains("members"));

  for (const ObjectEntry* e : {&root, &inner, &data, &spilled}) {
    std::vector<uint8_t> encoded = {0xc0};  // appended after what is there
    codec_.Encode(*e, &encoded);
    EXPECT_EQ(json::from_msgpack(encoded.begin() + 1, encoded.end()),
              codec_.Expand(*e))
        << e->id.ToString();
  }
}

TEST_F(TreeCodecTest, TheCacheListsDistinctBlobsInFirstVisitOrder) {
  ObjectEntry& b1 = Blob(0, 10);
  ObjectEntry& b2 = Blob(64, 20);
  ObjectEntry& b3 = Blob(128, 40);
  ObjectEntry& inner = Composite({{"x", b2.id}, {"y", b1.id}});
  ObjectEntry& root =
      Composite({{"a", inner.id}, {"b", b1.id}, {"c", b3.id}, {"d", inner.id}});
  EXPECT_EQ(codec_.CacheOf(root).blobs,
            (std::vector<ObjectID>{b2.id, b1.id, b3.id}));
  EXPECT_EQ(root.nbytes, 70u);
  EXPECT_EQ(&codec_.CacheOf(root), root.tree_cache.get());  // built once
  EXPECT_EQ(codec_.CacheOf(b3).blobs, std::vector<ObjectID>{b3.id});
  EXPECT_TRUE(codec_.CacheOf(Composite({})).blobs.empty());
}

TEST_F(TreeCodecTest, TheEncodingIsRebuiltWhenTheRelocationsChange) {
  ObjectEntry& blob = Blob(0, 10);
  ObjectEntry& root = Composite({{"b", blob.id}});
  std::vector<uint8_t> first = codec_.Encoded(root, 0);
  EXPECT_EQ(json::from_msgpack(first)["members"]["b"]["offset"], 0u);
  blob.offset = 640;                          // moved by a reload
  EXPECT_EQ(codec_.Encoded(root, 0), first);  // the cache is trusted
  EXPECT_EQ(
      json::from_msgpack(codec_.Encoded(root, 1))["members"]["b"]["offset"],
      640u);
}

}  // namespace
}  // namespace trellis::server
