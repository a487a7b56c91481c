# Writes a header declaring `inline constexpr const char NAME[]` holding the
# text of INPUT, for a file the daemon serves as it is (the status page).
# Run as: cmake -DINPUT=... -DOUTPUT=... -DNAME=... -P EmbedText.cmake
# A raw string literal keeps the text readable; the delimiter must not occur
# in it.
file(READ "${INPUT}" text)
string(FIND "${text}" ")TRELLIS_TEXT\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${INPUT} contains the raw string delimiter")
endif()
file(WRITE "${OUTPUT}.tmp"
  "// Generated from ${INPUT} by cmake/EmbedText.cmake: do not edit.\n"
  "#pragma once\n\n"
  "namespace trellis::server {\n"
  "inline constexpr const char ${NAME}[] = R\"TRELLIS_TEXT(${text})TRELLIS_TEXT\";\n"
  "}  // namespace trellis::server\n")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
