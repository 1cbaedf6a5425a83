// shoal_copy_floor: the physical floor of a merge. A merge of N models reads every byte of the N
// inputs once and writes one output; this program does exactly that and nothing else, with the
// same access pattern (output chunk k needs chunk k of every input) and the same thread count.
// merge_bench.py compares `shoal merge` against it. Plain POSIX on purpose: it must not share
// code (or slowness) with the thing it measures.
//
//   shoal_copy_floor OUT_FILE --write-bytes B --threads T [--chunk BYTES] [--mmap]
//       -- MODEL0_FILES... , MODEL1_FILES... , ...
//
// A model is one or more files (its shards, in order), models are separated by ",". The bytes
// written are model 0's, so the output is a copy of its first B bytes.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

struct File {
  std::string path;
  int fd = -1;
  uint64_t size = 0;
  const unsigned char* map = nullptr;  // only in --mmap mode
};

// A model's bytes: its files concatenated, in the order given.
struct Model {
  std::vector<File> files;
  uint64_t size = 0;
};

struct Options {
  std::string out_path;
  uint64_t write_bytes = 0;
  int threads = 2;
  uint64_t chunk = 256 * 1024;  // 3 models x 256 KiB stay in a core's L2
  bool use_mmap = false;
  std::vector<Model> models;
};

[[noreturn]] void die(const std::string& message) {
  std::fprintf(stderr, "shoal_copy_floor: %s\n", message.c_str());
  std::exit(1);
}

Options parse(int argc, char** argv) {
  Options o;
  int i = 1;
  for (; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) die(a + " needs a value");
      return argv[++i];
    };
    if (a == "--") {
      ++i;
      break;
    } else if (a == "--write-bytes") {
      o.write_bytes = std::stoull(next());
    } else if (a == "--threads") {
      o.threads = std::stoi(next());
    } else if (a == "--chunk") {
      o.chunk = std::stoull(next());
    } else if (a == "--mmap") {
      o.use_mmap = true;
    } else if (o.out_path.empty() && a[0] != '-') {
      o.out_path = a;
    } else {
      die("unknown argument " + a);
    }
  }
  o.models.emplace_back();
  for (; i < argc; ++i) {
    if (std::string(argv[i]) == ",") {
      o.models.emplace_back();
    } else {
      o.models.back().files.push_back({argv[i]});
    }
  }
  if (o.out_path.empty() || o.models.front().files.empty() || o.threads < 1 || o.chunk == 0) {
    die("usage: shoal_copy_floor OUT --write-bytes B --threads T [--chunk C] [--mmap] -- FILES");
  }
  return o;
}

void open_inputs(Options& o) {
  for (auto& m : o.models) {
    for (auto& f : m.files) {
      f.fd = ::open(f.path.c_str(), O_RDONLY);
      struct stat st {};
      if (f.fd < 0 || ::fstat(f.fd, &st) != 0) die("cannot open " + f.path);
      f.size = static_cast<uint64_t>(st.st_size);
      m.size += f.size;
      if (o.use_mmap && f.size > 0) {
        void* p = ::mmap(nullptr, f.size, PROT_READ, MAP_SHARED, f.fd, 0);
        if (p == MAP_FAILED) die("cannot mmap " + f.path);
        f.map = static_cast<const unsigned char*>(p);
      }
    }
  }
}

// Sums the bytes so the compiler cannot drop the loads; vectorizes to wide adds.
uint64_t touch(const unsigned char* p, size_t n) {
  uint64_t sum = 0;
  for (size_t i = 0; i < n; ++i) sum += p[i];
  return sum;
}

// Reads bytes [begin, begin + n) of model m (across its shard files). With pread they land in
// dst; in --mmap mode they are read in place (summed into *checksum) and copied to dst only when
// the range spans two files. *data points at the bytes either way. Returns the number of bytes
// obtained (less than n at the end of the model).
size_t read_range(const Model& m, uint64_t begin, size_t n, unsigned char* dst,
                  const unsigned char** data, uint64_t* checksum) {
  size_t got = 0;
  uint64_t file_start = 0;
  *data = dst;
  for (const auto& f : m.files) {
    const uint64_t file_end = file_start + f.size;
    const uint64_t lo = begin + got;
    if (got < n && lo >= file_start && lo < file_end) {
      const size_t want = static_cast<size_t>(std::min<uint64_t>(n - got, file_end - lo));
      const uint64_t off = lo - file_start;
      if (f.map) {
        *checksum += touch(f.map + off, want);
        if (got == 0 && want == n) {
          *data = f.map + off;
        } else {
          std::memcpy(dst + got, f.map + off, want);
        }
      } else {
        for (size_t done = 0; done < want;) {
          const ssize_t r = ::pread(f.fd, dst + got + done, want - done, off + done);
          if (r <= 0) die("read failed: " + f.path);
          done += static_cast<size_t>(r);
        }
      }
      got += want;
    }
    file_start = file_end;
  }
  return got;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  open_inputs(o);
  uint64_t longest = o.write_bytes;
  for (const auto& m : o.models) longest = std::max(longest, m.size);

  const int out_fd = ::open(o.out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (out_fd < 0) die("cannot create " + o.out_path);
  if (::ftruncate(out_fd, static_cast<off_t>(o.write_bytes)) != 0) die("cannot size output");

  const auto t0 = std::chrono::steady_clock::now();
  const uint64_t n_units = (longest + o.chunk - 1) / o.chunk;
  std::atomic<uint64_t> next_unit{0}, total_read{0}, checksum{0};
  auto worker = [&] {
    std::vector<unsigned char> buffer(o.chunk * o.models.size());
    uint64_t my_read = 0, my_sum = 0;
    for (uint64_t u; (u = next_unit.fetch_add(1)) < n_units;) {
      const uint64_t begin = u * o.chunk;
      const unsigned char* out_src = nullptr;
      size_t out_have = 0;
      for (size_t m = 0; m < o.models.size(); ++m) {
        const unsigned char* data = nullptr;
        const size_t got =
            read_range(o.models[m], begin, o.chunk, buffer.data() + m * o.chunk, &data, &my_sum);
        my_read += got;
        if (m == 0) out_src = data, out_have = got;
      }
      if (begin >= o.write_bytes) continue;
      const size_t n = static_cast<size_t>(std::min<uint64_t>(o.chunk, o.write_bytes - begin));
      if (out_have < n) {
        // Past the end of model 0 (it can be a little shorter than another model): pad zeros.
        if (out_src != buffer.data()) std::memcpy(buffer.data(), out_src, out_have);
        std::memset(buffer.data() + out_have, 0, n - out_have);
        out_src = buffer.data();
      }
      for (size_t done = 0; done < n;) {
        const ssize_t w = ::pwrite(out_fd, out_src + done, n - done, begin + done);
        if (w <= 0) die("write failed: " + o.out_path);
        done += static_cast<size_t>(w);
      }
    }
    total_read += my_read;
    checksum += my_sum;
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < o.threads; ++t) threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  if (::close(out_fd) != 0) die("cannot close " + o.out_path);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("{\"seconds\": %.6f, \"read_bytes\": %llu, \"write_bytes\": %llu, \"sum\": %llu}\n",
              secs, static_cast<unsigned long long>(total_read.load()),
              static_cast<unsigned long long>(o.write_bytes),
              static_cast<unsigned long long>(checksum.load() & 0xff));
  return 0;
}
