# The libFuzzer targets: the wire decoder (src/common/protocol_fuzz.cc) and
# the Python extension's MessagePack decoder (python/src/tree_decode_fuzz.cc).
#
# libFuzzer ships with clang, not gcc, so the targets are compiled with
# clang++ directly (whatever CMAKE_CXX_COMPILER is) when clang++ is found,
# and skipped otherwise. `ctest` runs each for its TRELLIS_*_FUZZ_SECONDS with
# a fixed seed, starting from its committed seed corpus; new inputs go to a
# corpus directory in the build tree and crash reproducers to
# build/fuzz-artifacts/<target>-.
find_program(TRELLIS_CLANGXX NAMES clang++ clang++-16 clang++-15 clang++-14)
if(NOT TRELLIS_CLANGXX)
  message(STATUS "clang++ not found: the fuzz targets are not built")
  return()
endif()

set(TRELLIS_FUZZ_SECONDS 25 CACHE STRING
    "How long the protocol_fuzz test runs under ctest")
set(TRELLIS_TREE_FUZZ_SECONDS 10 CACHE STRING
    "How long the tree_decode_fuzz test runs under ctest")

file(GLOB _fuzz_headers
  ${CMAKE_SOURCE_DIR}/src/common/*.h ${CMAKE_SOURCE_DIR}/include/trellis/*.h
  ${CMAKE_SOURCE_DIR}/src/client/object_meta_internal.h)

# trellis_fuzz_target(NAME SOURCES <files> CORPUS <dir> SECONDS <n>
#                     [FLAGS <compile and link flags>] [DEPENDS <files>]
#                     [NO_LEAK_CHECK])
function(trellis_fuzz_target name)
  cmake_parse_arguments(F "NO_LEAK_CHECK" "CORPUS;SECONDS"
                        "SOURCES;FLAGS;DEPENDS" ${ARGN})
  set(leaks 1)
  if(F_NO_LEAK_CHECK)
    set(leaks 0)
  endif()
  set(bin ${CMAKE_BINARY_DIR}/bin/${name})
  add_custom_command(
    OUTPUT ${bin}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/bin
    COMMAND ${TRELLIS_CLANGXX} -std=c++20 -g -O1
            -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
            -I ${CMAKE_SOURCE_DIR}/include -I ${CMAKE_SOURCE_DIR}/src
            ${F_SOURCES} ${F_FLAGS} -o ${bin}
    DEPENDS ${F_SOURCES} ${F_DEPENDS} ${_fuzz_headers}
    COMMENT "Building ${name} (clang++ libFuzzer + ASan + UBSan)"
    VERBATIM)
  add_custom_target(${name} ALL DEPENDS ${bin})
  if(TRELLIS_BUILD_TESTS)
    set(work ${CMAKE_BINARY_DIR}/fuzz-corpus/${name})
    set(artifacts ${CMAKE_BINARY_DIR}/fuzz-artifacts)
    file(MAKE_DIRECTORY ${work} ${artifacts})
    # The first directory receives new inputs; the committed seeds stay as
    # they are.
    add_test(NAME ${name}
      COMMAND ${bin} -max_total_time=${F_SECONDS} -seed=1
              -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
              -artifact_prefix=${artifacts}/${name}-
              ${work} ${F_CORPUS})
    set_tests_properties(${name} PROPERTIES
      TIMEOUT 300 LABELS fuzz
      ENVIRONMENT "ASAN_OPTIONS=detect_leaks=${leaks};UBSAN_OPTIONS=print_stacktrace=1")
  endif()
endfunction()

set(_src ${CMAKE_SOURCE_DIR}/src)
trellis_fuzz_target(protocol_fuzz
  SOURCES ${_src}/common/protocol_fuzz.cc ${_src}/common/protocol.cc
          ${_src}/common/status.cc ${_src}/common/object_id.cc
          ${_src}/client/object_meta.cc
  CORPUS ${_src}/common/fuzz_corpus
  SECONDS ${TRELLIS_FUZZ_SECONDS})

# The extension's decoder builds Python objects: the target embeds the
# interpreter (and imports numpy, which frame blocks use). Importing numpy
# leaks, so LeakSanitizer is off; the target checks for leaks itself.
find_package(Python3 COMPONENTS Interpreter Development.Embed QUIET)
if(TRELLIS_BUILD_PYTHON AND Python3_Development.Embed_FOUND)
  set(_py ${CMAKE_SOURCE_DIR}/python/src)
  set(_py_flags -fvisibility=hidden)
  foreach(dir ${Python3_INCLUDE_DIRS})
    list(APPEND _py_flags -isystem ${dir})
  endforeach()
  trellis_fuzz_target(tree_decode_fuzz
    SOURCES ${_py}/tree_decode_fuzz.cc ${_py}/tree_decode.cc ${_py}/errors.cc
            ${_py}/json_convert.cc ${_src}/common/protocol.cc
            ${_src}/common/status.cc ${_src}/common/object_id.cc
    FLAGS ${_py_flags} ${Python3_LIBRARIES}
    DEPENDS ${_py}/tree_decode.h ${_py}/errors.h ${_py}/json_convert.h
    CORPUS ${_py}/tree_decode_fuzz_corpus
    SECONDS ${TRELLIS_TREE_FUZZ_SECONDS}
    NO_LEAK_CHECK)
else()
  message(STATUS "Python embedding not found: tree_decode_fuzz is not built")
endif()
