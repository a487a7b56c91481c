// The public API that needs no daemon (ObjectMeta, StoreStatus), compiled
// the way a user compiles it: include/ is the only project include
// directory and third-party headers are poisoned (cmake/TrellisTests.cmake),
// so this target stops building if a public header pulls one in.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <type_traits>
#include <utility>

#include "trellis/client.h"
#include "trellis/object.h"
#include "trellis/store_status.h"

#if defined(INCLUDE_NLOHMANN_JSON_HPP_) || defined(NLOHMANN_JSON_VERSION_MAJOR)
#error "a public trellis header includes nlohmann-json"
#endif

namespace trellis {
namespace {

TEST(ObjectMetaTest, TypedFieldsRoundTrip) {
  ObjectMeta meta("test::Thing");
  meta.SetField("name", "x_train");
  meta.SetField("label", std::string("y"));
  meta.SetField("rows", int64_t{-3});
  meta.SetField("size", uint64_t{1} << 63);
  meta.SetField("small", 7);  // an int literal
  meta.SetField("ratio", 0.25);
  meta.SetField("ok", true);
  EXPECT_EQ(*meta.GetStringField("name"), "x_train");
  EXPECT_EQ(*meta.GetStringField("label"), "y");
  EXPECT_EQ(*meta.GetIntField("rows"), -3);
  EXPECT_EQ(*meta.GetUintField("size"), uint64_t{1} << 63);
  EXPECT_EQ(*meta.GetIntField("small"), 7);
  EXPECT_EQ(*meta.GetUintField("small"), 7u);
  EXPECT_EQ(*meta.GetDoubleField("small"), 7.0);  // any number
  EXPECT_EQ(*meta.GetDoubleField("ratio"), 0.25);
  EXPECT_TRUE(*meta.GetBoolField("ok"));
  EXPECT_EQ(*meta.GetFieldJson("ok"), "true");
  EXPECT_TRUE(meta.HasField("rows"));
  EXPECT_FALSE(meta.HasField("nope"));
  std::vector<std::string> names = meta.FieldNames();
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()),
            (std::set<std::string>{"name", "label", "rows", "size", "small",
                                   "ratio", "ok"}));
  meta.SetField("rows", 10);  // replaces
  EXPECT_EQ(*meta.GetIntField("rows"), 10);
}

TEST(ObjectMetaTest, TypedReadsOfTheWrongTypeOrAMissingKeyFail) {
  ObjectMeta meta("test::Thing");
  meta.SetField("text", "abc");
  meta.SetField("negative", -1);
  meta.SetField("huge", UINT64_MAX);
  meta.SetField("flag", false);
  auto missing = meta.GetIntField("nope");
  EXPECT_TRUE(missing.status().IsObjectNotFound());
  EXPECT_NE(missing.status().message().find("'nope'"), std::string::npos);
  EXPECT_TRUE(meta.GetFieldJson("nope").status().IsObjectNotFound());
  auto not_int = meta.GetIntField("text");
  EXPECT_TRUE(not_int.status().IsInvalid());
  EXPECT_NE(not_int.status().message().find("'text'"), std::string::npos);
  EXPECT_TRUE(meta.GetUintField("negative").status().IsInvalid());
  EXPECT_TRUE(meta.GetIntField("huge").status().IsInvalid());  // > INT64_MAX
  EXPECT_TRUE(meta.GetStringField("negative").status().IsInvalid());
  EXPECT_TRUE(meta.GetDoubleField("text").status().IsInvalid());
  EXPECT_TRUE(meta.GetBoolField("negative").status().IsInvalid());
  EXPECT_TRUE(meta.GetIntField("flag").status().IsInvalid());
}

TEST(ObjectMetaTest, JsonFieldsAreTheEscapeHatch) {
  ObjectMeta meta("test::Thing");
  ASSERT_TRUE(meta.SetFieldJson("shape", "[2, 3]").ok());
  ASSERT_TRUE(meta.SetFieldJson("nested", R"({"a": {"b": null}})").ok());
  EXPECT_EQ(*meta.GetFieldJson("shape"), "[2,3]");
  EXPECT_EQ(*meta.GetFieldJson("nested"), R"({"a":{"b":null}})");
  EXPECT_TRUE(meta.GetIntField("shape").status().IsInvalid());
  Status bad = meta.SetFieldJson("shape", "[2, ");
  EXPECT_TRUE(bad.IsInvalid());
  EXPECT_NE(bad.message().find("'shape'"), std::string::npos);
  EXPECT_EQ(*meta.GetFieldJson("shape"), "[2,3]");  // left as it was
}

TEST(ObjectMetaTest, JsonTextRoundTripsAndIsValidated) {
  ObjectMeta meta("test::Holder");
  meta.SetField("k", "v");
  ObjectMeta member("test::Part");
  member.SetField("n", 1);
  meta.AddMember("part", member);
  meta.AddMember("existing", ObjectID(42));
  auto back = ObjectMeta::FromJsonString(meta.ToJsonString());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->ToJsonString(), meta.ToJsonString());
  EXPECT_EQ(back->type_name(), "test::Holder");
  EXPECT_EQ(back->MemberNames(),
            (std::vector<std::string>{"existing", "part"}));
  EXPECT_EQ(back->GetMember("existing")->id(), ObjectID(42));
  EXPECT_EQ(*back->GetMember("part")->GetIntField("n"), 1);
  EXPECT_TRUE(back->GetMember("nope").status().IsObjectNotFound());

  EXPECT_TRUE(ObjectMeta::FromJsonString("{").status().IsInvalid());
  EXPECT_TRUE(ObjectMeta::FromJsonString("[1]").status().IsInvalid());
  EXPECT_TRUE(
      ObjectMeta::FromJsonString(R"({"typename": 3})").status().IsInvalid());
  EXPECT_TRUE(ObjectMeta::FromJsonString(
                  R"({"typename": "t", "members": {"m": {"fields": 1}}})")
                  .status()
                  .IsInvalid());
  auto gotten_shape =
      ObjectMeta::FromJsonString(R"({"typename": "trellis::Blob", "id": 5,
                                      "nbytes": 8, "offset": 64})");
  ASSERT_TRUE(gotten_shape.ok()) << gotten_shape.status();
  EXPECT_TRUE(gotten_shape->is_blob());
  EXPECT_EQ(gotten_shape->nbytes(), 8u);
  // No lease: not gotten from a client, so its bytes are not mapped.
  EXPECT_TRUE(gotten_shape->AsBlob().status().IsInvalid());
}

TEST(ObjectMetaTest, CopiesAreDeepAndMovedFromMetasStayUsable) {
  ObjectMeta a("test::A");
  a.SetField("x", 1);
  ObjectMeta b = a;
  b.SetField("x", 2);
  EXPECT_EQ(*a.GetIntField("x"), 1);
  EXPECT_EQ(*b.GetIntField("x"), 2);
  a = b;
  EXPECT_EQ(*a.GetIntField("x"), 2);

  ObjectMeta c = std::move(a);
  EXPECT_EQ(*c.GetIntField("x"), 2);
  EXPECT_EQ(a.type_name(), "");  // NOLINT: moved-from reads as empty
  EXPECT_FALSE(a.HasField("x"));
  a.SetField("y", 3);  // and can be written again
  EXPECT_EQ(*a.GetIntField("y"), 3);
  ObjectMeta d = a;
  EXPECT_EQ(*d.GetIntField("y"), 3);
}

TEST(StoreStatusTest, EveryFieldIsVisitedOnceInOrder) {
  StoreStatus status;
  status.arena_size = 5;
  status.backend = "local";
  std::vector<std::string> names;
  status.ForEachField(
      [&](const char* name, const char* description, const auto& value) {
        names.push_back(name);
        EXPECT_GT(std::string(description).size(), 0u) << name;
        using T = std::decay_t<decltype(value)>;
        if constexpr (std::is_same_v<T, uint64_t>) {
          if (std::string(name) == "arena_size") {
            EXPECT_EQ(value, 5u);
          }
        }
      });
  ASSERT_FALSE(names.empty());
  EXPECT_EQ(names.front(), "instance_id");
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()).size(),
            names.size());
  // A visitor may write through the references.
  status.ForEachField([](const char*, const char*, auto& value) {
    value = std::decay_t<decltype(value)>{};
  });
  EXPECT_EQ(status.arena_size, 0u);
  EXPECT_EQ(status.backend, "");
}

}  // namespace
}  // namespace trellis
