# The libFuzzer target for the wire decoder (src/common/protocol_fuzz.cc).
#
# libFuzzer ships with clang, not gcc, so the target is compiled with clang++
# directly (whatever CMAKE_CXX_COMPILER is) when clang++ is found, and skipped
# otherwise. `ctest` runs it for TRELLIS_FUZZ_SECONDS with a fixed seed,
# starting from the committed seed corpus; new inputs go to a corpus directory
# in the build tree and crash reproducers to build/fuzz-artifacts/.
find_program(TRELLIS_CLANGXX NAMES clang++ clang++-16 clang++-15 clang++-14)
if(NOT TRELLIS_CLANGXX)
  message(STATUS "clang++ not found: the protocol fuzzer is not built")
  return()
endif()

set(TRELLIS_FUZZ_SECONDS 25 CACHE STRING
    "How long the protocol_fuzz test runs under ctest")

set(_fuzz_bin ${CMAKE_BINARY_DIR}/bin/protocol_fuzz)
set(_fuzz_sources
  ${CMAKE_SOURCE_DIR}/src/common/protocol_fuzz.cc
  ${CMAKE_SOURCE_DIR}/src/common/protocol.cc
  ${CMAKE_SOURCE_DIR}/src/common/status.cc
  ${CMAKE_SOURCE_DIR}/src/common/object_id.cc
  ${CMAKE_SOURCE_DIR}/src/client/object_meta.cc)
file(GLOB _fuzz_headers
  ${CMAKE_SOURCE_DIR}/src/common/*.h ${CMAKE_SOURCE_DIR}/include/trellis/*.h
  ${CMAKE_SOURCE_DIR}/src/client/object_meta_internal.h)

add_custom_command(
  OUTPUT ${_fuzz_bin}
  COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/bin
  COMMAND ${TRELLIS_CLANGXX} -std=c++20 -g -O1
          -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
          -I ${CMAKE_SOURCE_DIR}/include -I ${CMAKE_SOURCE_DIR}/src
          ${_fuzz_sources} -o ${_fuzz_bin}
  DEPENDS ${_fuzz_sources} ${_fuzz_headers}
  COMMENT "Building protocol_fuzz (clang++ libFuzzer + ASan + UBSan)"
  VERBATIM)
add_custom_target(protocol_fuzz ALL DEPENDS ${_fuzz_bin})

if(TRELLIS_BUILD_TESTS)
  set(_fuzz_work ${CMAKE_BINARY_DIR}/fuzz-corpus)
  set(_fuzz_artifacts ${CMAKE_BINARY_DIR}/fuzz-artifacts)
  file(MAKE_DIRECTORY ${_fuzz_work} ${_fuzz_artifacts})
  # The first directory receives new inputs; the committed seeds stay as
  # they are.
  add_test(NAME protocol_fuzz
    COMMAND ${_fuzz_bin} -max_total_time=${TRELLIS_FUZZ_SECONDS} -seed=1
            -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
            -artifact_prefix=${_fuzz_artifacts}/
            ${_fuzz_work} ${CMAKE_SOURCE_DIR}/src/common/fuzz_corpus)
  set_tests_properties(protocol_fuzz PROPERTIES
    TIMEOUT 300 LABELS fuzz
    ENVIRONMENT "ASAN_OPTIONS=detect_leaks=1;UBSAN_OPTIONS=print_stacktrace=1")
endif()
