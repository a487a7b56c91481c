#include "trellis/tensor.h"

#include <cstring>
#include <optional>
#include <string_view>

#include "client/object_meta_internal.h"
#include "common/protocol.h"
#include "common/tree_format.h"

namespace trellis {

using json = protocol::json;

static_assert(std::string_view(kTensorTypeName) == format::kTensor);
static_assert(std::string_view(kDataFrameTypeName) == format::kDataFrame);
static_assert(std::string_view(kRangeIndexTypeName) == format::kRangeIndex);

Result<uint64_t> DTypeItemSize(const std::string& dtype) {
  std::optional<format::DType> parsed = format::ParseDType(dtype);
  if (!parsed) {
    return Status::Invalid("unsupported dtype '" + dtype +
                           "' (want numpy's dtype.str, e.g. '<i8')");
  }
  return parsed->item_size;
}

namespace {
std::vector<int64_t> CStrides(const std::vector<int64_t>& shape,
                              uint64_t item) {
  std::vector<int64_t> strides(shape.size());
  int64_t stride = static_cast<int64_t>(item);
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = stride;
    stride *= shape[i];
  }
  return strides;
}

int64_t Elements(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Result<std::vector<int64_t>> IntList(const json& fields, std::string_view key) {
  auto it = fields.find(key);
  if (it == fields.end() || !it->is_array()) {
    return Status::Invalid("tensor field '" + std::string(key) +
                           "' must be a list of integers");
  }
  std::vector<int64_t> out;
  for (const json& v : *it) {
    if (!v.is_number_integer()) {
      return Status::Invalid("tensor field '" + std::string(key) +
                             "' must be a list of integers");
    }
    out.push_back(v.get<int64_t>());
  }
  return out;
}
}  // namespace

Result<ObjectMeta> Tensor::MakeMeta(const std::string& dtype,
                                    const std::vector<int64_t>& shape,
                                    ObjectID buffer, uint64_t offset,
                                    std::vector<int64_t> strides) {
  TRELLIS_ASSIGN_OR_RAISE(uint64_t item, DTypeItemSize(dtype));
  for (int64_t d : shape) {
    if (d < 0) return Status::Invalid("tensor shape has a negative dimension");
  }
  if (strides.empty()) strides = CStrides(shape, item);
  if (strides.size() != shape.size()) {
    return Status::Invalid("tensor strides and shape differ in length");
  }
  ObjectMeta meta(kTensorTypeName);
  using namespace format::tensor;
  meta.SetField(std::string(kDType), dtype);
  ObjectMetaAccess::SetField(&meta, std::string(kShape), shape);
  ObjectMetaAccess::SetField(&meta, std::string(kStrides), strides);
  meta.SetField(std::string(kOffset), offset);
  meta.AddMember(std::string(kBuffer), buffer);
  return meta;
}

Result<ObjectID> Tensor::Put(Client& client, const std::string& dtype,
                             const std::vector<int64_t>& shape,
                             const void* data, const PutOptions& options) {
  TRELLIS_ASSIGN_OR_RAISE(uint64_t item, DTypeItemSize(dtype));
  uint64_t nbytes = item * static_cast<uint64_t>(Elements(shape));
  TRELLIS_ASSIGN_OR_RAISE(auto writer, client.CreateBlob(nbytes));
  ParallelMemcpy(writer->data(), data, nbytes);
  TRELLIS_ASSIGN_OR_RAISE(ObjectMeta meta,
                          MakeMeta(dtype, shape, writer->id()));
  return client.CreateObject(meta, options);
}

Result<Tensor> Tensor::FromMeta(const ObjectMeta& meta) {
  using namespace format::tensor;
  TRELLIS_ASSIGN_OR_RAISE(const json* fields, ObjectMetaAccess::FieldsOfType(
                                                  meta, kTensorTypeName));
  const json& f = *fields;
  Tensor t;
  t.meta_ = meta;
  auto dtype = f.find(kDType);
  if (dtype == f.end() || !dtype->is_string()) {
    return Status::Invalid("tensor field 'dtype' must be a string");
  }
  t.dtype_ = dtype->get<std::string>();
  TRELLIS_ASSIGN_OR_RAISE(t.item_size_, DTypeItemSize(t.dtype_));
  TRELLIS_ASSIGN_OR_RAISE(t.shape_, IntList(f, kShape));
  TRELLIS_ASSIGN_OR_RAISE(t.strides_, IntList(f, kStrides));
  if (t.strides_.size() != t.shape_.size()) {
    return Status::Invalid("tensor strides and shape differ in length");
  }
  uint64_t offset = 0;
  auto off = f.find(kOffset);
  if (off != f.end()) {
    if (!protocol::AsUint(*off, &offset)) {
      return Status::Invalid("tensor field 'offset' must be an unsigned int");
    }
  }
  TRELLIS_ASSIGN_OR_RAISE(t.buffer_, meta.GetBlobMember(std::string(kBuffer)));
  // Every element addressed by shape/strides must lie inside the blob.
  int64_t lo = 0, hi = 0;
  bool empty = false;
  for (size_t i = 0; i < t.shape_.size(); ++i) {
    if (t.shape_[i] < 0) return Status::Invalid("negative tensor dimension");
    if (t.shape_[i] == 0) empty = true;
    int64_t span = (t.shape_[i] - 1) * t.strides_[i];
    (span < 0 ? lo : hi) += span;
  }
  if (!empty) {
    int64_t first = static_cast<int64_t>(offset) + lo;
    int64_t end =
        static_cast<int64_t>(offset) + hi + static_cast<int64_t>(t.item_size_);
    if (first < 0 || end > static_cast<int64_t>(t.buffer_.size())) {
      return Status::Invalid("tensor " + meta.id().ToString() +
                             " addresses bytes outside its buffer");
    }
  }
  t.data_ = t.buffer_.data() + offset;
  return t;
}

Result<Tensor> Tensor::Get(Client& client, ObjectID id) {
  TRELLIS_ASSIGN_OR_RAISE(ObjectMeta meta, client.GetMeta(id));
  return FromMeta(meta);
}

int64_t Tensor::size() const { return Elements(shape_); }

Result<Tensor> Tensor::Row(int64_t i) const {
  if (shape_.empty()) return Status::Invalid("a 0-d tensor has no rows");
  if (i < 0 || i >= shape_[0]) {
    return Status::Invalid("row " + std::to_string(i) + " out of range (" +
                           std::to_string(shape_[0]) + " rows)");
  }
  Tensor row = *this;
  row.data_ = data_ + i * strides_[0];
  row.shape_.erase(row.shape_.begin());
  row.strides_.erase(row.strides_.begin());
  return row;
}

}  // namespace trellis
