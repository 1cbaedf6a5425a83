// MappedFile: contents, the empty file, errors, and that release() really gives pages back.
#include "io/mapped_file.h"

#include <unistd.h>

#include <fstream>

#include <gtest/gtest.h>

#include "io/test_support.h"
#include "shoal/error.h"

namespace shoal {
namespace {

using test::TempDir;
using test::write_file;

// Resident pages of this process (second field of /proc/self/statm).
long resident_pages() {
  std::ifstream statm("/proc/self/statm");
  long size = 0;
  long resident = 0;
  statm >> size >> resident;
  return resident;
}

TEST(MappedFile, MapsContents) {
  TempDir dir;
  write_file(dir / "f", "hello, mapping");
  const MappedFile m(dir / "f");
  ASSERT_EQ(m.size(), 14u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(m.data()), m.size()), "hello, mapping");
  EXPECT_EQ(m.path(), dir / "f");
  m.release(0, 14);  // a partial page: nothing to drop, contents unchanged
  m.release(3, 1000);
  m.release(1000, 5);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(m.data()), 5), "hello");
}

TEST(MappedFile, EmptyFileMapsNothing) {
  TempDir dir;
  write_file(dir / "empty", "");
  const MappedFile m(dir / "empty");
  EXPECT_EQ(m.size(), 0u);
  EXPECT_EQ(m.data(), nullptr);
  m.release(0, 100);
}

TEST(MappedFile, ErrorsNameThePath) {
  TempDir dir;
  try {
    MappedFile m(dir / "absent");
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find((dir / "absent").string()), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("No such file"), std::string::npos) << e.what();
  }
  EXPECT_THROW(MappedFile m(dir.path()), IoError);
}

TEST(MappedFile, ReleaseDropsResidentPages) {
  TempDir dir;
  const long page = ::sysconf(_SC_PAGESIZE);
  const size_t n_pages = 4096;  // 16 MiB with 4 KiB pages
  write_file(dir / "big", std::string(n_pages * page, 'x'));
  const MappedFile m(dir / "big");
  const long before = resident_pages();
  unsigned sum = 0;
  for (size_t i = 0; i < m.size(); i += page) sum += static_cast<unsigned char>(m.data()[i]);
  EXPECT_EQ(sum, n_pages * 'x');
  const long touched = resident_pages();
  EXPECT_GE(touched - before, static_cast<long>(n_pages) * 9 / 10);

  // A range that starts and ends mid-page keeps the two partial pages.
  m.release(page / 2, m.size() - page);
  const long released = resident_pages();
  EXPECT_LE(released - before, static_cast<long>(n_pages) / 10);
  // The data comes back from the page cache on the next read.
  EXPECT_EQ(static_cast<char>(m.data()[m.size() / 2]), 'x');
}

}  // namespace
}  // namespace shoal
