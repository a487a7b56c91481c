#include <cstring>

#include "client/object_meta_internal.h"
#include "common/tree_format.h"
#include "trellis/tensor.h"

namespace trellis {

using json = protocol::json;
using namespace format::dataframe;
namespace range_index = format::range_index;

Result<ObjectID> DataFrame::Put(Client& client,
                                const std::vector<ColumnData>& columns,
                                int64_t num_rows, const PutOptions& options) {
  if (num_rows < 0) return Status::Invalid("num_rows must not be negative");
  // All columns go into one blob, each starting on a kColumnAlign boundary.
  std::vector<uint64_t> offsets;
  uint64_t total = 0;
  for (const ColumnData& c : columns) {
    TRELLIS_ASSIGN_OR_RAISE(uint64_t item, DTypeItemSize(c.dtype));
    total = (total + kColumnAlign - 1) & ~(kColumnAlign - 1);
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
    meta.AddMember(ColumnMember(i), column);
    names.push_back(c.name);
  }
  ObjectMeta index(kRangeIndexTypeName);
  index.SetField(std::string(range_index::kStart), 0);
  index.SetField(std::string(range_index::kStop), num_rows);
  index.SetField(std::string(range_index::kStep), 1);
  meta.AddMember(std::string(kIndex), index);
  ObjectMetaAccess::SetField(&meta, std::string(kColumns), std::move(names));
  meta.SetField(std::string(kNumRows), num_rows);
  return client.CreateObject(meta, options);
}

Result<DataFrame> DataFrame::FromMeta(const ObjectMeta& meta) {
  TRELLIS_ASSIGN_OR_RAISE(const json* fields, ObjectMetaAccess::FieldsOfType(
                                                  meta, kDataFrameTypeName));
  const json& f = *fields;
  DataFrame df;
  df.meta_ = meta;
  auto rows = f.find(kNumRows);
  auto names = f.find(kColumns);
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
  size_t count = df.column_names_.size();
  df.places_.resize(count);
  std::vector<bool> placed(count, false);
  auto blocks = f.find(kBlockColumns);
  if (blocks != f.end()) {
    if (!blocks->is_array()) {
      return Status::Invalid("DataFrame field 'block_columns' must be a list");
    }
    for (size_t k = 0; k < blocks->size(); ++k) {
      const json& positions = (*blocks)[k];
      std::string member = BlockMember(k);
      if (!meta.HasMember(member)) {
        return Status::Invalid("DataFrame has no member " + member);
      }
      if (!positions.is_array()) {
        return Status::Invalid("DataFrame block_columns[" + std::to_string(k) +
                               "] must be a list of column positions");
      }
      for (size_t row = 0; row < positions.size(); ++row) {
        const json& p = positions[row];
        if (!p.is_number_integer() || p.get<int64_t>() < 0 ||
            p.get<int64_t>() >= static_cast<int64_t>(count) ||
            placed[p.get<size_t>()]) {
          return Status::Invalid("DataFrame block_columns[" +
                                 std::to_string(k) + "] has " + p.dump() +
                                 ", not a position of a column placed once");
        }
        if (meta.HasMember(ColumnMember(p.get<size_t>()))) {
          return Status::Invalid("DataFrame column " + p.dump() + " is in " +
                                 member + " and member column_" + p.dump() +
                                 " too");
        }
        placed[p.get<size_t>()] = true;
        df.places_[p.get<size_t>()] = {member, static_cast<int64_t>(row)};
      }
    }
  }
  for (size_t i = 0; i < count; ++i) {
    if (placed[i]) continue;
    if (!meta.HasMember(ColumnMember(i))) {
      return Status::Invalid("DataFrame has no member column_" +
                             std::to_string(i));
    }
    df.places_[i] = {ColumnMember(i), -1};
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
  return meta_.GetMember(places_[i].member);
}

int64_t DataFrame::block_row(size_t i) const {
  return i < places_.size() ? places_[i].row : -1;
}

Result<Tensor> DataFrame::column(size_t i) const {
  TRELLIS_ASSIGN_OR_RAISE(ObjectMeta m, column_meta(i));
  TRELLIS_ASSIGN_OR_RAISE(Tensor t, Tensor::FromMeta(m));
  int64_t row = places_[i].row;
  if (row < 0) return t;
  if (t.shape().size() != 2 || t.shape()[1] != num_rows_) {
    return Status::Invalid("DataFrame " + places_[i].member +
                           " is not a 2-d tensor of " +
                           std::to_string(num_rows_) + " rows per column");
  }
  return t.Row(row);
}

Result<Tensor> DataFrame::column(const std::string& name) const {
  for (size_t i = 0; i < column_names_.size(); ++i) {
    if (column_names_[i] == name) return column(i);
  }
  return Status::ObjectNotFound("DataFrame has no column '" + name + "'");
}

Result<ObjectMeta> DataFrame::index_meta() const {
  return meta_.GetMember(std::string(kIndex));
}

}  // namespace trellis
