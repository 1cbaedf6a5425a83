// Errors that shoal reports to its users. Recoverable problems (a bad file, a bad recipe, an I/O
// failure) throw a subclass of shoal::Error whose message is one line naming the file, key or
// tensor and what was expected. Implemented in src/core/error.cpp.
#pragma once

#include <stdexcept>
#include <string>

namespace shoal {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A file's contents are not what its format requires (safetensors, JSON, GGUF, ...).
class FormatError : public Error {
 public:
  using Error::Error;
};

// A recipe, config or command-line value is invalid.
class ConfigError : public Error {
 public:
  using Error::Error;
};

// The operating system refused an operation (open, read, write, rename, mmap).
class IoError : public Error {
 public:
  using Error::Error;
};

// Builds "<what>: <strerror(errno)>" for an IoError.
std::string errno_message(const std::string& what);

// Always-on invariant check; a failure is a bug in shoal, not in the user's input.
[[noreturn]] void assert_fail(const char* expr, const char* file, int line);

}  // namespace shoal

#define SHOAL_ASSERT(expr) \
  ((expr) ? static_cast<void>(0) : ::shoal::assert_fail(#expr, __FILE__, __LINE__))
