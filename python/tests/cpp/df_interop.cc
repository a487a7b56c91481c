// trellis_df_interop: the C++ side of the Python <-> C++ DataFrame tests.
//
//   trellis_df_interop put <socket> <name> <rows>
//       puts a DataFrame with columns i64 (<i8, 3*i-7), f64 (<f8, i/2),
//       flag (|b1, i%3==0), u8 (|u1, i%251) and i64b (<i8, i*i) and binds
//       it to <name>.
//   trellis_df_interop describe <socket> <name>
//       reads the DataFrame bound to <name> with trellis::DataFrame and
//       prints one JSON line: num_rows, the index node, and per column its
//       name, the typename of its node (its block's if it is in one), its
//       row in that block (-1 if none), dtype and the sum/first/last of its
//       values.
// Exit status 0 on success; errors go to stderr with status 1.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "trellis/client.h"
#include "trellis/tensor.h"

namespace {

using nlohmann::json;
using trellis::Result;
using trellis::Status;

// Element `i` of a 1-d numeric/bool tensor as a double.
double Element(const trellis::Tensor& t, int64_t i) {
  const uint8_t* p = t.data() + i * t.strides()[0];
  const std::string& d = t.dtype();
  auto load = [p](auto v) {
    std::memcpy(&v, p, sizeof(v));
    return static_cast<double>(v);
  };
  if (d == "<i8") return load(int64_t{});
  if (d == "<i4") return load(int32_t{});
  if (d == "<f8") return load(double{});
  if (d == "<f4") return load(float{});
  if (d == "|b1" || d == "|u1") return load(uint8_t{});
  if (d == "<u8") return load(uint64_t{});
  return 0;
}

Status Put(trellis::Client& client, const std::string& name, int64_t rows) {
  std::vector<int64_t> i64(rows), i64b(rows);
  std::vector<double> f64(rows);
  std::vector<uint8_t> flag(rows), u8(rows);
  for (int64_t i = 0; i < rows; ++i) {
    i64[i] = 3 * i - 7;
    f64[i] = static_cast<double>(i) / 2;
    flag[i] = i % 3 == 0;
    u8[i] = static_cast<uint8_t>(i % 251);
    i64b[i] = i * i;
  }
  trellis::PutOptions options;
  options.name = name;
  auto id = trellis::DataFrame::Put(client,
                                    {{"i64", "<i8", i64.data()},
                                     {"f64", "<f8", f64.data()},
                                     {"flag", "|b1", flag.data()},
                                     {"u8", "|u1", u8.data()},
                                     {"i64b", "<i8", i64b.data()}},
                                    rows, options);
  if (!id.ok()) return id.status();
  std::cout << json{{"id", id->ToString()}}.dump() << std::endl;
  return Status::OK();
}

Status Describe(trellis::Client& client, const std::string& name) {
  TRELLIS_ASSIGN_OR_RAISE(trellis::ObjectID id, client.GetName(name));
  TRELLIS_ASSIGN_OR_RAISE(trellis::DataFrame df,
                          trellis::DataFrame::Get(client, id));
  TRELLIS_ASSIGN_OR_RAISE(trellis::ObjectMeta index, df.index_meta());
  json out = {
      {"num_rows", df.num_rows()},
      {"index",
       {{"typename", index.type_name()},
        {"fields", json::parse(index.ToJsonString()).value("fields", json())}}},
      {"columns", json::array()}};
  for (size_t c = 0; c < df.num_columns(); ++c) {
    TRELLIS_ASSIGN_OR_RAISE(trellis::ObjectMeta meta, df.column_meta(c));
    json col = {{"name", df.column_names()[c]},
                {"typename", meta.type_name()},
                {"block_row", df.block_row(c)}};
    if (meta.type_name() == trellis::kTensorTypeName) {
      TRELLIS_ASSIGN_OR_RAISE(trellis::Tensor t, df.column(c));
      if (t.shape().size() != 1 || t.shape()[0] != df.num_rows()) {
        return Status::Invalid("column " + df.column_names()[c] +
                               " is not of length num_rows");
      }
      double sum = 0;
      for (int64_t i = 0; i < t.shape()[0]; ++i) sum += Element(t, i);
      col["dtype"] = t.dtype();
      col["sum"] = sum;
      if (t.shape()[0] > 0) {
        col["first"] = Element(t, 0);
        col["last"] = Element(t, t.shape()[0] - 1);
      }
    }
    out["columns"].push_back(col);
  }
  std::cout << out.dump() << std::endl;
  return Status::OK();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr,
                 "usage: %s put <socket> <name> <rows> | describe <socket> "
                 "<name>\n",
                 argv[0]);
    return 2;
  }
  std::string mode = argv[1];
  auto client = trellis::Client::Connect(argv[2]);
  if (!client.ok()) {
    std::fprintf(stderr, "%s\n", client.status().ToString().c_str());
    return 1;
  }
  Status st;
  if (mode == "put" && argc == 5) {
    st = Put(**client, argv[3], std::stoll(argv[4]));
  } else if (mode == "describe") {
    st = Describe(**client, argv[3]);
  } else {
    st = Status::Invalid("unknown mode " + mode);
  }
  if (!st.ok()) {
    std::fprintf(stderr, "%s\n", st.ToString().c_str());
    return 1;
  }
  return 0;
}
