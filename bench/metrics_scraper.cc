// metrics_scraper URL SECONDS SLOT_MS: the lean scraper of
// bench/metrics_slots.py, a stand-in for Prometheus (a compiled client)
// where the Python scraper stands for a script.
//
// For SECONDS it works in the even SLOT_MS slots of CLOCK_MONOTONIC (slot
// k: [k, k+1) * SLOT_MS since the clock's origin, as small_get_loop counts
// them) and sleeps through the odd ones. In an even slot it wakes every
// 100 ms (10/s) and GETs URL (http://HOST:PORT/PATH), asking to keep the
// connection (trellisd closes it after each request, so each GET connects
// anew). Exits 1 if a GET fails or does not answer 200, 2 on bad
// arguments.
#include <httplib.h>
#include <time.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <regex>
#include <string>

namespace {

constexpr int64_t kScrapeEveryNs = 100'000'000;  // 10 scrapes per second

int64_t MonotonicNanos() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
}

void SleepUntil(int64_t ns) {
  timespec t{};
  t.tv_sec = ns / 1000000000;
  t.tv_nsec = ns % 1000000000;
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, nullptr) ==
         EINTR) {
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s URL SECONDS SLOT_MS\n", argv[0]);
    return 2;
  }
  std::smatch url;
  const std::string url_text = argv[1];
  if (!std::regex_match(url_text, url,
                        std::regex(R"(http://([^/:]+):(\d+)(/.*))"))) {
    std::fprintf(stderr, "URL must be http://HOST:PORT/PATH, not '%s'\n",
                 argv[1]);
    return 2;
  }
  const double seconds = std::atof(argv[2]);
  const auto slot_ns = static_cast<int64_t>(std::atof(argv[3]) * 1e6);
  if (seconds <= 0 || slot_ns <= 0) {
    std::fprintf(stderr, "SECONDS and SLOT_MS must be positive numbers\n");
    return 2;
  }
  httplib::Client client(url[1].str(), std::stoi(url[2].str()));
  client.set_keep_alive(true);
  const std::string path = url[3].str();

  const int64_t end = MonotonicNanos() + static_cast<int64_t>(seconds * 1e9);
  for (int64_t now = MonotonicNanos(); now < end; now = MonotonicNanos()) {
    const int64_t k = now / slot_ns;
    if (k % 2 == 0) {
      for (int64_t at = k * slot_ns; at < (k + 1) * slot_ns;
           at += kScrapeEveryNs) {
        SleepUntil(at);
        auto answer = client.Get(path);
        if (!answer || answer->status != 200) {
          std::fprintf(stderr, "GET %s failed: %s\n", argv[1],
                       answer ? std::to_string(answer->status).c_str()
                              : httplib::to_string(answer.error()).c_str());
          return 1;
        }
      }
    }
    SleepUntil((k + 1) * slot_ns);
  }
  return 0;
}
