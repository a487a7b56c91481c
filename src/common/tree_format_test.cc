#include "common/tree_format.h"

#include <gtest/gtest.h>

namespace trellis::format {
namespace {

using json = protocol::json;

TEST(TreeFormatTest, ParsesNumpyDTypeStrings) {
  struct Case {
    const char* text;
    uint64_t item_size;  // 0: not a dtype of the format
  };
  const Case cases[] = {
      {"<i8", 8},
      {"|u1", 1},
      {">i2", 2},
      {"=u4", 4},
      {"|b1", 1},
      {"<f2", 2},
      {"<f16", 16},
      {"<c8", 8},
      {"<c32", 32},
      {"<M8[ns]", 8},
      {"<m8[us]", 8},
      {"<M8", 8},
      {"<M8[10ns]", 8},
      {"|S5", 5},
      {"|S0", 0},
      {"<U3", 12},
      {"|V16", 16},
      // Not dtypes of the format.
      {"i8", 0},
      {"<i3", 0},
      {"<b2", 0},
      {"<f1", 0},
      {"<c4", 0},
      {"<M4", 0},
      {"<M8ns", 0},
      {"<i8[ns]", 0},
      {"<x8", 0},
      {"<i", 0},
      {"", 0},
      {"<S99999999999999", 0},
  };
  for (const Case& c : cases) {
    std::optional<DType> d = ParseDType(c.text);
    bool expect_valid = c.item_size != 0 || std::string_view(c.text) == "|S0";
    ASSERT_EQ(d.has_value(), expect_valid) << c.text;
    if (d) {
      EXPECT_EQ(d->item_size, c.item_size) << c.text;
    }
  }
}

TEST(TreeFormatTest, BlockItemSizeIsNarrowerThanTensors) {
  EXPECT_EQ(BlockItemSize("<i8"), 8u);
  EXPECT_EQ(BlockItemSize("<c16"), 16u);
  EXPECT_EQ(BlockItemSize("<M8[ns]"), 8u);
  EXPECT_EQ(BlockItemSize("<m8"), 8u);
  EXPECT_EQ(BlockItemSize("<f16"), 0u);  // a tensor, not a block
  EXPECT_EQ(BlockItemSize("<c32"), 0u);
  EXPECT_EQ(BlockItemSize("<M8[10ns]"), 0u);
  EXPECT_EQ(BlockItemSize("|S5"), 0u);
  EXPECT_EQ(BlockItemSize("<U1"), 0u);
  EXPECT_EQ(BlockItemSize("bad"), 0u);
  // Every kind Python writes as blocks is one the readers join.
  for (char kind : kBlockWriteKinds) {
    const DTypeKind* k = FindDTypeKind(kind);
    ASSERT_NE(k, nullptr) << kind;
    EXPECT_GT(k->max_block_item, 0) << kind;
  }
  for (char kind : kTensorWriteKinds) EXPECT_NE(FindDTypeKind(kind), nullptr);
}

Status Shape(const json& node, TreeKind kind,
             NodeShape<const json*>* shape = nullptr) {
  NodeShape<const json*> ignored;
  return CheckNodeShape<JsonNodes>(&node, kind, shape ? shape : &ignored);
}

TEST(TreeFormatTest, NodeShapeOfBuiltTrees) {
  NodeShape<const json*> shape;
  ASSERT_TRUE(Shape({{"id", 7}, {"fields", 3}}, TreeKind::kBuilding, &shape)
                  .ok());  // nothing but the id of a reference counts
  EXPECT_TRUE(shape.reference);
  EXPECT_EQ(shape.id, 7u);

  json node = {{"id", 0},
               {"typename", "t::T"},
               {"fields", json::object()},
               {"members", json::object()}};
  ASSERT_TRUE(Shape(node, TreeKind::kBuilding, &shape).ok());
  EXPECT_FALSE(shape.reference);  // id 0: a new node
  EXPECT_EQ(shape.fields, &node["fields"]);
  EXPECT_EQ(shape.members, &node["members"]);

  EXPECT_EQ(Shape(json::array(), TreeKind::kBuilding).message(),
            "tree node must be a map");
  EXPECT_TRUE(Shape({{"id", 0}}, TreeKind::kBuilding).IsInvalid());
  EXPECT_TRUE(Shape({{"typename", ""}}, TreeKind::kBuilding).IsInvalid());
  EXPECT_EQ(Shape({{"typename", kBlob}}, TreeKind::kBuilding).message(),
            "blobs are made with CreateBlobs, not in a tree");
  EXPECT_EQ(Shape({{"typename", "t::T"}, {"members", 1}}, TreeKind::kBuilding)
                .message(),
            "'members' of a t::T node must be a map");
}

TEST(TreeFormatTest, NodeShapeOfGottenTrees) {
  EXPECT_TRUE(Shape({{"id", 0}}, TreeKind::kGotten).ok());
  EXPECT_TRUE(Shape({{"typename", ""}}, TreeKind::kGotten).ok());
  EXPECT_TRUE(Shape({{"typename", kBlob}, {"id", 3}}, TreeKind::kGotten).ok());
  EXPECT_TRUE(Shape({{"id", -1}}, TreeKind::kGotten).IsInvalid());
  EXPECT_TRUE(Shape({{"typename", 5}}, TreeKind::kGotten).IsInvalid());
  // A gotten reference's fields are checked too.
  EXPECT_EQ(Shape({{"id", 4}, {"fields", json::array()}}, TreeKind::kGotten)
                .message(),
            "'fields' of a referenced node must be a map");
}

TEST(TreeFormatTest, GottenTreeNamesTheBadNodeAndBoundsDepth) {
  json tree = {
      {"typename", "t::A"},
      {"members", {{"a", {{"typename", "t::B"}, {"members", {{"b", 3}}}}}}}};
  Status st = CheckGottenTree<JsonNodes>(&tree);
  EXPECT_TRUE(st.IsInvalid());
  EXPECT_EQ(st.message(), "member 'a': member 'b': tree node must be a map");

  json deep = {{"typename", "t::Leaf"}};
  for (int i = 0; i < kMaxTreeLevels; ++i) {
    deep = {{"typename", "t::N"}, {"members", {{"m", deep}}}};
  }
  EXPECT_TRUE(CheckGottenTree<JsonNodes>(&deep).ok());
  deep = {{"typename", "t::N"}, {"members", {{"m", deep}}}};
  EXPECT_TRUE(CheckGottenTree<JsonNodes>(&deep).IsInvalid());
}

}  // namespace
}  // namespace trellis::format
