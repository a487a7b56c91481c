#include "trellis/tensor.h"

#include <cstring>

#include "client/object_meta_internal.h"
#include "common/protocol.h"

namespace trellis {

using json = protocol::json;

Result<uint64_t> DTypeItemSize(const std::string& dtype) {
  auto bad = [&] {
    return Status::Invalid("unsupported dtype '" + dtype +
                           "' (want numpy's dtype.str, e.g. '<i8')");
  };
  if (dtype.size() < 3) return bad();
  char order = dtype[0];
  if (order != '<' && order != '>' && order != '|' && order != '=') {
    return bad();
  }
  char kind = dtype[1];
  std::string rest = dtype.substr(2);
  if (kind == 'M' || kind == 'm') {  // datetime64/timedelta64: "8[unit]"
    if (rest.rfind("8", 0) != 0) return bad();
    return uint64_t{8};
  }
  uint64_t count = 0;
  for (char c : rest) {
    if (c < '0' || c > '9' || count > (uint64_t{1} << 40)) return bad();
    count = count * 10 + static_cast<uint64_t>(c - '0');
  }
  switch (kind) {
    case 'b':
    case 'i':
    case 'u':
      if (count != 1 && count != 2 && count != 4 && count != 8) return bad();
      return count;
    case 'f':
      if (count != 2 && count != 4 && count != 8 && count != 16) return bad();
      return count;
    case 'c':
      if (count != 8 && count != 16 && count != 32) return bad();
      return count;
    case 'S':
    case 'V':
      return count;
    case 'U':
      return count * 4;
    default:
      return bad();
  }
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

Result<std::vector<int64_t>> IntList(const json& fields, const char* key) {
  auto it = fields.find(key);
  if (it == fields.end() || !it->is_array()) {
    return Status::Invalid(std::string("tensor field '") + key +
                           "' must be a list of integers");
  }
  std::vector<int64_t> out;
  for (const json& v : *it) {
    if (!v.is_number_integer()) {
      return Status::Invalid(std::string("tensor field '") + key +
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
  meta.SetField("dtype", dtype);
  ObjectMetaAccess::SetField(&meta, "shape", shape);
  ObjectMetaAccess::SetField(&meta, "strides", strides);
  meta.SetField("offset", offset);
  meta.AddMember("buffer", buffer);
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
  if (meta.type_name() != kTensorTypeName) {
    return Status::Invalid("object " + meta.id().ToString() + " is a " +
                           meta.type_name() + ", not a " + kTensorTypeName);
  }
  Tensor t;
  t.meta_ = meta;
  const json& f = ObjectMetaAccess::FieldsOf(meta);
  auto dtype = f.find("dtype");
  if (dtype == f.end() || !dtype->is_string()) {
    return Status::Invalid("tensor field 'dtype' must be a string");
  }
  t.dtype_ = dtype->get<std::string>();
  TRELLIS_ASSIGN_OR_RAISE(t.item_size_, DTypeItemSize(t.dtype_));
  TRELLIS_ASSIGN_OR_RAISE(t.shape_, IntList(f, "shape"));
  TRELLIS_ASSIGN_OR_RAISE(t.strides_, IntList(f, "strides"));
  if (t.strides_.size() != t.shape_.size()) {
    return Status::Invalid("tensor strides and shape differ in length");
  }
  uint64_t offset = 0;
  auto off = f.find("offset");
  if (off != f.end()) {
    if (!protocol::AsUint(*off, &offset)) {
      return Status::Invalid("tensor field 'offset' must be an unsigned int");
    }
  }
  TRELLIS_ASSIGN_OR_RAISE(t.buffer_, meta.GetBlobMember("buffer"));
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

}  // namespace trellis
