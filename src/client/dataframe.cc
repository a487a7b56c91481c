#include <cstring>

#include "client/object_meta_internal.h"
#include "trellis/tensor.h"

namespace trellis {

using json = protocol::json;

Result<ObjectID> DataFrame::Put(Client& client,
                                const std::vector<ColumnData>& columns,
                                int64_t num_rows, const PutOptions& options) {
  if (num_rows < 0) return Status::Invalid("num_rows must not be negative");
  // All columns go into one blob, each starting on a 64-byte boundary.
  std::vector<uint64_t> offsets;
  uint64_t total = 0;
  for (const ColumnData& c : columns) {
    TRELLIS_ASSIGN_OR_RAISE(uint64_t item, DTypeItemSize(c.dtype));
    total = (total + 63) & ~uint64_t{63};
    offsets.push_back(total);
    total += item * static_cast<uint64_t>(num_rows);
  }
  TRELLIS_ASSIGN_OR_RAISE(auto writer, client.CreateBlob(total));
  ObjectMeta meta(kDataFrameTypeName);
  json names = json::array();
  for (size_t i = 0; i < columns.size(); ++i) {
    const ColumnData& c = columns[i];
    uint64_t item = DTypeItemSize(c.dtype).value();
    ParallelMemcpy(writer->data() + offsets[i], c.data,
                   item * static_cast<uint64_t>(num_rows));
    TRELLIS_ASSIGN_OR_RAISE(
        ObjectMeta column,
        Tensor::MakeMeta(c.dtype, {num_rows}, writer->id(), offsets[i]));
    meta.AddMember("column_" + std::to_string(i), column);
    names.push_back(c.name);
  }
  ObjectMeta index(kRangeIndexTypeName);
  index.SetField("start", 0);
  index.SetField("stop", num_rows);
  index.SetField("step", 1);
  meta.AddMember("index", index);
  ObjectMetaAccess::SetField(&meta, "columns", std::move(names));
  meta.SetField("num_rows", num_rows);
  return client.CreateObject(meta, options);
}

Result<DataFrame> DataFrame::FromMeta(const ObjectMeta& meta) {
  if (meta.type_name() != kDataFrameTypeName) {
    return Status::Invalid("object " + meta.id().ToString() + " is a " +
                           meta.type_name() + ", not a " + kDataFrameTypeName);
  }
  DataFrame df;
  df.meta_ = meta;
  const json& f = ObjectMetaAccess::FieldsOf(meta);
  auto rows = f.find("num_rows");
  auto names = f.find("columns");
  if (rows == f.end() || !rows->is_number_integer() ||
      rows->get<int64_t>() < 0) {
    return Status::Invalid("DataFrame field 'num_rows' must be a count");
  }
  if (names == f.end() || !names->is_array()) {
    return Status::Invalid("DataFrame field 'columns' must be a list");
  }
  df.num_rows_ = rows->get<int64_t>();
  for (const json& name : *names) {
    df.column_names_.push_back(name.is_string() ? name.get<std::string>()
                                                : name.dump());
  }
  for (size_t i = 0; i < df.column_names_.size(); ++i) {
    if (!meta.HasMember("column_" + std::to_string(i))) {
      return Status::Invalid("DataFrame has no member column_" +
                             std::to_string(i));
    }
  }
  return df;
}

Result<DataFrame> DataFrame::Get(Client& client, ObjectID id) {
  TRELLIS_ASSIGN_OR_RAISE(ObjectMeta meta, client.GetMeta(id));
  return FromMeta(meta);
}

Result<ObjectMeta> DataFrame::column_meta(size_t i) const {
  if (i >= column_names_.size()) {
    return Status::Invalid("column " + std::to_string(i) + " out of range (" +
                           std::to_string(column_names_.size()) + " columns)");
  }
  return meta_.GetMember("column_" + std::to_string(i));
}

Result<Tensor> DataFrame::column(size_t i) const {
  TRELLIS_ASSIGN_OR_RAISE(ObjectMeta m, column_meta(i));
  return Tensor::FromMeta(m);
}

Result<Tensor> DataFrame::column(const std::string& name) const {
  for (size_t i = 0; i < column_names_.size(); ++i) {
    if (column_names_[i] == name) return column(i);
  }
  return Status::ObjectNotFound("DataFrame has no column '" + name + "'");
}

Result<ObjectMeta> DataFrame::index_meta() const {
  return meta_.GetMember("index");
}

}  // namespace trellis
