// The wire side of the Status reply, generated from the one field list
// TRELLIS_STORE_STATUS_FIELDS (include/trellis/store_status.h): the daemon
// encodes a StatusFields, the client decodes a StoreStatus.
#pragma once

#include <concepts>
#include <utility>

#include "common/protocol.h"
#include "trellis/store_status.h"

namespace trellis::protocol {

// A value that must be given: with no default constructor, an aggregate
// initialisation that leaves a Required member out does not compile.
template <typename T>
struct Required {
  template <typename U>
  requires std::convertible_to<U, T> Required(U&& v)
      : value(std::forward<U>(v)) {}  // NOLINT: implicit by design
  T value;
};

// Every status field, none defaulted. The daemon builds its reply as
//   StatusBody({.instance_id = ..., .backend = ..., ...})
// with the fields in list order; forgetting one is a compile error.
struct StatusFields {
#define TRELLIS_STATUS_FIELDS_MEMBER(type, name, description) \
  Required<type> name;
  TRELLIS_STORE_STATUS_FIELDS(TRELLIS_STATUS_FIELDS_MEMBER)
#undef TRELLIS_STATUS_FIELDS_MEMBER
};

// The Status reply's body: a map with one entry per field.
json StatusBody(const StatusFields& fields);

// A Status reply's body as a StoreStatus. Fields missing from the body or
// of another type keep their defaults (so a client can talk to a daemon
// that predates a field).
StoreStatus DecodeStatus(const json& body);

}  // namespace trellis::protocol
