// Poisoned for public_headers_test: the public headers (include/trellis/)
// must compile without third-party headers; this one was included.
#error "a public trellis header includes <asio.hpp>"
