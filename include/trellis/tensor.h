// Typed objects built on ObjectMeta: Tensor (an n-d array over one blob) and
// DataFrame (named columns of equal length plus an index). Their layout is
// specified in docs/format.md; Python's trellis package reads and writes the
// same layout.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "trellis/client.h"
#include "trellis/object.h"

namespace trellis {

inline constexpr const char* kTensorTypeName = "trellis::Tensor";
inline constexpr const char* kDataFrameTypeName = "trellis::DataFrame";
inline constexpr const char* kRangeIndexTypeName = "trellis::RangeIndex";

// Bytes per element of a dtype written as numpy's dtype.str: "<i8", "<f4",
// "|b1", "<M8[ns]", "|S5", "<U3" (U counts 4-byte code points). Invalid for
// anything else.
Result<uint64_t> DTypeItemSize(const std::string& dtype);

// A read-only n-dimensional array in the arena. Cheap to copy; keeps its
// bytes alive while any copy lives.
class Tensor {
 public:
  // The meta of a tensor whose elements start `offset` bytes into the blob
  // `buffer`. Empty `strides` means C order.
  static Result<ObjectMeta> MakeMeta(const std::string& dtype,
                                     const std::vector<int64_t>& shape,
                                     ObjectID buffer, uint64_t offset = 0,
                                     std::vector<int64_t> strides = {});
  // Copies a C-contiguous array into a new tensor (2 round trips).
  static Result<ObjectID> Put(Client& client, const std::string& dtype,
                              const std::vector<int64_t>& shape,
                              const void* data, const PutOptions& options = {});
  static Result<Tensor> FromMeta(const ObjectMeta& meta);
  static Result<Tensor> Get(Client& client, ObjectID id);

  // The (n-1)-d tensor at index `i` of the first dimension: a view of the
  // same bytes, with this tensor's meta and id. Invalid for a 0-d tensor or
  // `i` outside [0, shape()[0]).
  Result<Tensor> Row(int64_t i) const;

  ObjectID id() const { return meta_.id(); }
  const std::string& dtype() const { return dtype_; }
  uint64_t item_size() const { return item_size_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  const std::vector<int64_t>& strides() const { return strides_; }  // bytes
  int64_t size() const;  // number of elements
  const uint8_t* data() const { return data_; }
  template <typename T>
  const T* data_as() const {
    return reinterpret_cast<const T*>(data_);
  }
  const ObjectMeta& meta() const { return meta_; }

 private:
  ObjectMeta meta_;
  std::string dtype_;
  uint64_t item_size_ = 0;
  std::vector<int64_t> shape_;
  std::vector<int64_t> strides_;
  const uint8_t* data_ = nullptr;
  Blob buffer_;
};

// A column to copy into a new DataFrame: `num_rows` elements of `dtype`.
struct ColumnData {
  std::string name;
  std::string dtype;
  const void* data;
};

class DataFrame {
 public:
  // Copies equal-length columns into one blob and creates a DataFrame with a
  // RangeIndex(0, num_rows): 2 round trips whatever the column count.
  static Result<ObjectID> Put(Client& client,
                              const std::vector<ColumnData>& columns,
                              int64_t num_rows, const PutOptions& options = {});
  static Result<DataFrame> FromMeta(const ObjectMeta& meta);
  static Result<DataFrame> Get(Client& client, ObjectID id);

  ObjectID id() const { return meta_.id(); }
  int64_t num_rows() const { return num_rows_; }
  size_t num_columns() const { return column_names_.size(); }
  // Column labels; non-string labels (from Python) in their JSON text form.
  const std::vector<std::string>& column_names() const { return column_names_; }
  // The meta of the node holding column i: the column itself (a Tensor, or
  // another type written by Python), or, for a column Python stored in a
  // block, the 2-d block whose row block_row(i) it is.
  Result<ObjectMeta> column_meta(size_t i) const;
  // The row of column i in its block, or -1 if it is a node of its own.
  int64_t block_row(size_t i) const;
  // Column i as a 1-d tensor (a view of its block's row if it is in one).
  Result<Tensor> column(size_t i) const;
  Result<Tensor> column(const std::string& name) const;
  // The index: a RangeIndex meta (fields start, stop, step) or a Tensor.
  Result<ObjectMeta> index_meta() const;
  const ObjectMeta& meta() const { return meta_; }

 private:
  // Where column i is: member `member`, row `row` of it (-1: all of it).
  struct ColumnPlace {
    std::string member;
    int64_t row = -1;
  };
  ObjectMeta meta_;
  int64_t num_rows_ = 0;
  std::vector<std::string> column_names_;
  std::vector<ColumnPlace> places_;
};

}  // namespace trellis
