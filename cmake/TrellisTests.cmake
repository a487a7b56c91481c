# The GoogleTest suites, which live next to the code they test.
# (trellis_testing, which runs trellisd for them, is defined in the top-level
# CMakeLists.txt: the benchmarks use it too.)

add_trellis_test(protocol_test SOURCES src/common/protocol_test.cc
  LIBS trellis_common)
add_trellis_test(allocator_test SOURCES src/server/allocator_test.cc
  LIBS trellis_server)
add_trellis_test(object_table_test SOURCES src/server/object_table_test.cc
  LIBS trellis_server)
add_trellis_test(tree_codec_test SOURCES src/server/tree_codec_test.cc
  LIBS trellis_server)
add_trellis_test(eviction_policy_test SOURCES src/server/eviction_policy_test.cc
  LIBS trellis_server)
add_trellis_test(size_parse_test SOURCES src/common/size_parse_test.cc
  LIBS trellis_common)
add_trellis_test(client_test SOURCES src/client/client_test.cc
  LIBS trellis trellis_testing)
add_trellis_test(daemon_test SOURCES src/server/daemon_test.cc
  LIBS trellis trellis_testing)
add_trellis_test(spill_test SOURCES src/server/spill_test.cc
  LIBS trellis trellis_testing)
add_trellis_test(etcd_client_test SOURCES src/server/etcd_client_test.cc
  LIBS trellis_etcd trellis_etcd_testing)
add_trellis_test(rpc_server_test SOURCES src/server/rpc_server_test.cc
  LIBS trellis trellis_server trellis_testing)
target_compile_definitions(rpc_server_test PRIVATE
  TRELLIS_FUZZ_CORPUS="${CMAKE_SOURCE_DIR}/src/common/fuzz_corpus")
