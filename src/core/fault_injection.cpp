#include "core/fault_injection.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#include "core/error.h"

namespace bidora::fault {
namespace {

constexpr std::array<std::string_view, 5> kPoints = {"checkpoint_write", "final_save", "step", "nan_loss",
                                                     "write_enospc"};

struct Armed {
  std::string point;
  int64_t at = 0;     // fires on this arrival (1-based)
  int64_t count = 0;  // arrivals so far
};

struct State {
  std::mutex mutex;
  std::vector<Armed> armed;
  bool loaded = false;
};

State& state() {
  static State s;
  return s;
}

// False until a setting with at least one point is loaded: the inactive path takes no lock.
std::atomic<bool> g_active{false};
std::once_flag g_env_once;

std::vector<Armed> parse(std::string_view spec) {
  std::vector<Armed> out;
  while (!spec.empty()) {
    const size_t comma = spec.find(',');
    const std::string_view item = spec.substr(0, comma);
    spec = comma == std::string_view::npos ? std::string_view() : spec.substr(comma + 1);
    if (item.empty()) continue;
    const size_t colon = item.rfind(':');
    BIDORA_CHECK(colon != std::string_view::npos, "BIDORA_FAULT: '{}' is not <point>:<n> (points: {})", item,
                 fmt::join(kPoints, ", "));
    Armed a;
    a.point = std::string(item.substr(0, colon));
    BIDORA_CHECK(std::find(kPoints.begin(), kPoints.end(), a.point) != kPoints.end(),
                 "BIDORA_FAULT: unknown point '{}' (points: {})", a.point, fmt::join(kPoints, ", "));
    const std::string_view n = item.substr(colon + 1);
    const auto [end, ec] = std::from_chars(n.data(), n.data() + n.size(), a.at);
    BIDORA_CHECK(ec == std::errc() && end == n.data() + n.size() && a.at >= 1,
                 "BIDORA_FAULT: '{}': the count must be a whole number >= 1", item);
    out.push_back(std::move(a));
  }
  return out;
}

void install(std::vector<Armed> armed) {
  State& s = state();
  std::lock_guard lock(s.mutex);
  s.armed = std::move(armed);
  s.loaded = true;
  g_active = !s.armed.empty();
}

void load_environment() {
  std::call_once(g_env_once, [] {
    const char* env = std::getenv("BIDORA_FAULT");
    State& s = state();
    {
      std::lock_guard lock(s.mutex);
      if (s.loaded) return;  // configure_for_testing came first
    }
    install(env ? parse(env) : std::vector<Armed>{});
  });
}

}  // namespace

bool reached(std::string_view point) {
  load_environment();
  if (!g_active.load(std::memory_order_relaxed)) return false;
  State& s = state();
  std::lock_guard lock(s.mutex);
  bool fire = false;
  for (Armed& a : s.armed) {
    if (a.point != point) continue;
    ++a.count;
    // A full disk stays full; the other faults happen once.
    if (a.count == a.at || (a.count > a.at && point == "write_enospc")) fire = true;
  }
  return fire;
}

void kill_if_reached(std::string_view point) {
  if (!reached(point)) return;
  ::kill(::getpid(), SIGKILL);
  ::pause();  // SIGKILL cannot be caught: never returns
}

void configure_for_testing(std::string_view spec) {
  install(parse(spec));
}

}  // namespace bidora::fault
