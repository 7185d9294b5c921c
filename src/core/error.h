#pragma once
// One exception type for every user-facing failure. Messages name the file, the field or
// tensor, and what was expected, so the CLI can print them as they are and exit non-zero.
#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <utility>

namespace bidora {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

// Like assert, but always on and with a message for the user.
#define BIDORA_CHECK(cond, ...)               \
  do {                                        \
    if (!(cond)) ::bidora::fail(__VA_ARGS__); \
  } while (0)

}  // namespace bidora
