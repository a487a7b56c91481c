// msgpack-cxx, configured once for the whole project: header-only, without
// Boost, API version 3. Include this instead of <msgpack.hpp>.
#pragma once

#ifndef MSGPACK_NO_BOOST
#define MSGPACK_NO_BOOST
#endif
#ifndef MSGPACK_DEFAULT_API_VERSION
#define MSGPACK_DEFAULT_API_VERSION 3
#endif
#include <msgpack.hpp>
