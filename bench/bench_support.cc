#include "bench_support.h"

#include <errno.h>  // program_invocation_short_name

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "common/size_parse.h"

namespace trellis::bench {

void Die(const std::string& what) {
  std::fprintf(stderr, "%s: %s\n", program_invocation_short_name, what.c_str());
  std::exit(1);
}

void Must(const Status& s, const char* what) {
  if (!s.ok()) Die(std::string(what) + ": " + s.ToString());
}

void AddTrellisdFlag(CLI::App& app, std::string* path) {
  *path = testing::BuiltTrellisd();
  app.add_option("--trellisd", *path, "the trellisd to run")
      ->capture_default_str();
}

void AddSizeFlag(CLI::App& app, const std::string& name, uint64_t* value,
                 const std::string& help) {
  app.add_option_function<std::string>(
         name,
         [name, value](const std::string& text) {
           auto parsed = ParseByteSize(text);
           if (!parsed.ok()) {
             throw CLI::ValidationError(name, parsed.status().message());
           }
           *value = *parsed;
         },
         help)
      ->type_name("SIZE");
}

std::unique_ptr<testing::DaemonProcess> StartDaemon(
    const std::string& trellisd, const std::vector<std::string>& args) {
  testing::DaemonOptions options;
  options.trellisd = trellisd;
  options.args = args;
  options.start_timeout = std::chrono::seconds(120);
  return Must(testing::DaemonProcess::Start(options), "starting trellisd");
}

}  // namespace trellis::bench
