# add_trellis_test(NAME SOURCES... [LIBS libs...] [LABELS labels...])
# Builds a GoogleTest binary and registers it with ctest. Tests run from the
# build directory and find trellisd through TRELLISD_PATH.
function(add_trellis_test name)
  cmake_parse_arguments(T "" "" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${T_SOURCES} ${T_UNPARSED_ARGUMENTS})
  target_link_libraries(${name} PRIVATE ${T_LIBS} GTest::gtest GTest::gtest_main)
  target_compile_definitions(${name} PRIVATE
    TRELLISD_PATH="$<TARGET_FILE:trellisd>")
  add_dependencies(${name} trellisd)
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES TIMEOUT 600)
  if(T_LABELS)
    set_tests_properties(${name} PROPERTIES LABELS "${T_LABELS}")
  endif()
endfunction()

# add_trellis_tests(LIBS libs... SOURCES a_test.cc b_test.cc...)
# add_trellis_test for each source, all linked against the same LIBS; each
# test is named after its source file (src/common/foo_test.cc -> foo_test).
function(add_trellis_tests)
  cmake_parse_arguments(T "" "" "SOURCES;LIBS" ${ARGN})
  foreach(_source ${T_SOURCES})
    get_filename_component(_name ${_source} NAME_WE)
    add_trellis_test(${_name} SOURCES ${_source} LIBS ${T_LIBS})
  endforeach()
endfunction()
