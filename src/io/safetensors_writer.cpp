// Writing safetensors files whose complete list of tensors is known up front: every header is
// written and every file sized at construction, so tensor bytes can then land in any order, from
// any thread, with pwrite and no locking (distinct tensors never share bytes).
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "io/file_write.h"
#include "io/json_util.h"
#include "shoal/error.h"
#include "shoal/safetensors.h"

namespace shoal {

struct SafetensorsWriter::Shard {
  std::string name;  // file name within dir
  std::filesystem::path path;
  int fd = -1;
  size_t first_tensor = 0;  // shards hold consecutive runs of the tensor list
  size_t n_tensors = 0;
  uint64_t data_start = 0;  // 8 + padded header length
  uint64_t data_size = 0;
  // Bytes successfully written per tensor of this shard; finish() checks each tensor is complete.
  std::unique_ptr<std::atomic<uint64_t>[]> written;
  std::mutex error_mu;
  std::string error;  // the first write error, "" if none

  ~Shard() {
    if (fd >= 0) ::close(fd);
  }
};

namespace {

using io::pwrite_all;

std::string shard_name(size_t i, size_t n) {
  if (n == 1) return "model.safetensors";
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", i + 1, n);
  return buf;
}

void check_specs(const std::vector<OutputTensorSpec>& tensors) {
  std::set<std::string_view> seen;
  for (const OutputTensorSpec& t : tensors) {
    if (t.name == "__metadata__") {
      throw ConfigError("output tensor name '__metadata__' is reserved by the safetensors format");
    }
    if (!seen.insert(t.name).second) {
      throw ConfigError("output tensor " + io::quoted(t.name) + " is listed twice");
    }
    int64_t numel = 1;
    for (int64_t d : t.shape) {
      if (d < 0 || __builtin_mul_overflow(numel, d, &numel)) {
        throw ConfigError("output tensor " + io::quoted(t.name) + " has an invalid shape " +
                          shape_to_string(t.shape));
      }
    }
  }
}

// The shard's JSON header padded with spaces so that the data section starts 8-byte aligned
// (as the reference writer does); tensors are laid out back to back in list order.
std::string shard_header(const std::vector<OutputTensorSpec>& tensors, size_t first, size_t count,
                         const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (size_t i = first; i < first + count; ++i) {
    const OutputTensorSpec& t = tensors[i];
    const uint64_t end = offset + t.nbytes();
    header[t.name] = {
        {"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, end}}};
    offset = end;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception&) {
    throw ConfigError("an output tensor name or metadata entry is not valid UTF-8");
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

}  // namespace

SafetensorsWriter::SafetensorsWriter(std::filesystem::path dir,
                                     std::vector<OutputTensorSpec> tensors, uint64_t shard_size,
                                     std::map<std::string, std::string> metadata)
    : dir_(std::move(dir)), tensors_(std::move(tensors)), metadata_(std::move(metadata)) {
  check_specs(tensors_);

  // Plan: fill a shard in list order until the next tensor would take it past shard_size; a
  // tensor larger than shard_size thus ends up alone in its shard.
  std::vector<std::pair<size_t, size_t>> runs;  // (first tensor, count)
  uint64_t shard_bytes = 0;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const uint64_t n = tensors_[i].nbytes();
    if (runs.empty() ||
        (runs.back().second > 0 && n > shard_size - std::min(shard_size, shard_bytes))) {
      runs.emplace_back(i, 0);
      shard_bytes = 0;
    }
    ++runs.back().second;
    shard_bytes += n;
  }
  if (runs.empty()) runs.emplace_back(0, 0);  // no tensors: still one valid, empty file

  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) throw IoError("cannot create " + dir_.string() + ": " + ec.message());

  placements_.resize(tensors_.size());
  for (size_t s = 0; s < runs.size(); ++s) {
    auto shard = std::make_unique<Shard>();
    shard->name = shard_name(s, runs.size());
    shard->path = dir_ / shard->name;
    shard->first_tensor = runs[s].first;
    shard->n_tensors = runs[s].second;
    shard->written = std::make_unique<std::atomic<uint64_t>[]>(shard->n_tensors);

    const std::string header =
        shard_header(tensors_, shard->first_tensor, shard->n_tensors, metadata_);
    shard->data_start = 8 + header.size();
    uint64_t offset = shard->data_start;
    for (size_t i = shard->first_tensor; i < shard->first_tensor + shard->n_tensors; ++i) {
      placements_[i] = Placement{s, offset};
      offset += tensors_[i].nbytes();
    }
    shard->data_size = offset - shard->data_start;

    shard->fd = ::open(shard->path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (shard->fd < 0) throw IoError(errno_message("cannot create " + shard->path.string()));
    unsigned char length[8];
    for (int b = 0; b < 8; ++b) length[b] = static_cast<unsigned char>(header.size() >> (8 * b));
    if (!pwrite_all(shard->fd, length, 8, 0) ||
        !pwrite_all(shard->fd, header.data(), header.size(), 8)) {
      throw IoError(errno_message("cannot write " + shard->path.string()));
    }
    // Sized up front (sparse until written), so writes may arrive in any order.
    if (::ftruncate(shard->fd, static_cast<off_t>(offset)) != 0) {
      throw IoError(errno_message("cannot resize " + shard->path.string()));
    }
    shards_.push_back(std::move(shard));
  }
}

SafetensorsWriter::~SafetensorsWriter() = default;  // Shard closes its descriptor; never throws

void SafetensorsWriter::write(size_t tensor_index, uint64_t byte_offset, const void* data,
                              size_t n) {
  SHOAL_ASSERT(!finished_);
  SHOAL_ASSERT(tensor_index < tensors_.size());
  const uint64_t nbytes = tensors_[tensor_index].nbytes();
  SHOAL_ASSERT(byte_offset <= nbytes && n <= nbytes - byte_offset);
  const Placement& p = placements_[tensor_index];
  Shard& shard = *shards_[p.shard];
  if (!pwrite_all(shard.fd, data, n, p.file_offset + byte_offset)) {
    const std::string message = errno_message("cannot write " + shard.path.string());
    const std::lock_guard lock(shard.error_mu);
    if (shard.error.empty()) shard.error = message;
    return;
  }
  shard.written[tensor_index - shard.first_tensor].fetch_add(n, std::memory_order_relaxed);
}

void SafetensorsWriter::finish() {
  if (finished_) return;
  finished_ = true;
  std::string error;
  for (const auto& shard : shards_) {
    if (error.empty() && !shard->error.empty()) error = shard->error;
    for (size_t i = 0; i < shard->n_tensors && error.empty(); ++i) {
      const OutputTensorSpec& t = tensors_[shard->first_tensor + i];
      const uint64_t got = shard->written[i].load();
      if (got != t.nbytes()) {
        error = shard->path.string() + ": tensor " + io::quoted(t.name) + ": " +
                std::to_string(got) + " bytes were written, expected " + std::to_string(t.nbytes());
      }
    }
    const int fd = shard->fd;
    shard->fd = -1;
    // close() is where some file systems (NFS) report a failed write-back.
    if (::close(fd) != 0 && error.empty()) {
      error = errno_message("cannot close " + shard->path.string());
    }
  }
  if (!error.empty()) throw IoError(error);
  if (shards_.size() == 1) return;

  nlohmann::json index;
  uint64_t total = 0;
  nlohmann::json weight_map = nlohmann::json::object();
  for (size_t i = 0; i < tensors_.size(); ++i) {
    total += tensors_[i].nbytes();
    weight_map[tensors_[i].name] = shards_[placements_[i].shard]->name;
  }
  index["metadata"] = {{"total_size", total}};
  index["weight_map"] = std::move(weight_map);
  const std::filesystem::path path = dir_ / "model.safetensors.index.json";
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << index.dump(2) << '\n';
  out.close();
  if (!out) throw IoError(errno_message("cannot write " + path.string()));
}

std::vector<std::string> SafetensorsWriter::file_names() const {
  std::vector<std::string> names;
  for (const auto& shard : shards_) names.push_back(shard->name);
  if (shards_.size() > 1) names.push_back("model.safetensors.index.json");
  return names;
}

}  // namespace shoal
