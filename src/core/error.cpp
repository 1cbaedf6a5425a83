#include "shoal/error.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace shoal {

std::string errno_message(const std::string& what) {
  return what + ": " + std::strerror(errno);
}

void assert_fail(const char* expr, const char* file, int line) {
  std::fprintf(stderr, "shoal: internal error: assertion '%s' failed at %s:%d\n", expr, file, line);
  std::abort();
}

}  // namespace shoal
