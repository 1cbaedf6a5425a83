// A read-only memory mapping of a whole file, with a hint to drop pages from this process's
// resident set once they have been read. Internal to the io layer; implemented in
// src/io/mapped_file.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>

namespace shoal {

// Maps the whole file read-only (MAP_SHARED, PROT_READ). A 0-byte file is valid and maps
// nothing (data() is nullptr). The mapping lives as long as this object; the file descriptor is
// closed right after mapping. If another process truncates the file while it is mapped, reading
// the lost pages raises SIGBUS: the kernel offers no way to guard against that, so shoal never
// writes files it is reading. Thread-safe: data() and release() may be called concurrently.
class MappedFile {
 public:
  // Throws IoError (one line: path and strerror) when the file cannot be opened, is not a
  // regular file, or cannot be mapped.
  explicit MappedFile(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  const std::byte* data() const { return data_; }
  uint64_t size() const { return size_; }

  // Drops the whole pages inside [offset, offset + length) from this process's resident set
  // (madvise MADV_DONTNEED). The page cache keeps the data, so a later read faults the pages
  // back in without I/O. Pages shared with bytes outside the range are kept, except the file's
  // last partial page when the range reaches the end of the file. Out-of-range parts are
  // ignored. Only a hint: never fails.
  void release(uint64_t offset, uint64_t length) const;

 private:
  std::filesystem::path path_;
  const std::byte* data_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace shoal
