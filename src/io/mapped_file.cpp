#include "io/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "shoal/error.h"

namespace shoal {

namespace {

// Closes a descriptor on every path out of the constructor.
struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

MappedFile::MappedFile(const std::filesystem::path& path) : path_(path) {
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) throw IoError(errno_message("cannot open " + path.string()));
  FdCloser closer{fd};

  struct stat st {};
  if (::fstat(fd, &st) != 0) throw IoError(errno_message("cannot stat " + path.string()));
  if (!S_ISREG(st.st_mode)) {
    throw IoError("cannot map " + path.string() + ": not a regular file");
  }
  size_ = static_cast<uint64_t>(st.st_size);
  if (size_ == 0) return;  // mmap rejects length 0; an empty file simply maps nothing

  void* p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) throw IoError(errno_message("cannot map " + path.string()));
  data_ = static_cast<const std::byte*>(p);
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), size_);
}

void MappedFile::release(uint64_t offset, uint64_t length) const {
  if (data_ == nullptr || offset >= size_) return;
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t last = length > size_ - offset ? size_ : offset + length;
  // Round inward so that neighbouring tensors' pages stay resident; the tail page past the end
  // of the file holds nothing else, so a range reaching the end may take it whole.
  const uint64_t begin = (offset + page - 1) / page * page;
  const uint64_t end = last == size_ ? (size_ + page - 1) / page * page : last / page * page;
  if (begin >= end) return;
  // A hint only: a failure leaves the pages resident, which is harmless.
  ::madvise(const_cast<std::byte*>(data_) + begin, end - begin, MADV_DONTNEED);
}

}  // namespace shoal
