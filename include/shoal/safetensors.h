// safetensors files: a validated, mmap'd reader with zero-copy tensor views, and a streaming,
// sharded writer. Format: 8-byte little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end)}, "__metadata__": {str: str}}, then the data
// section; offsets are relative to the data section.
// Implemented in src/io/safetensors_reader.cpp and src/io/safetensors_writer.cpp.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "shoal/dtype.h"

namespace shoal {

class MappedFile;

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offset of the first byte, relative to the data section
  uint64_t end = 0;    // one past the last byte

  int64_t numel() const { return shape_numel(shape); }
  uint64_t nbytes() const { return end - begin; }
};

// An open safetensors file. Every length, offset, dtype and shape from the file is checked at
// open(); afterwards views are plain pointers into the mapping, valid while this object lives.
// Thread-safe for concurrent view()/release() calls. Move-only.
class SafetensorsFile {
 public:
  // Throws FormatError (bad contents) or IoError (cannot open/map), each one line naming the
  // file and, where there is one, the tensor.
  static SafetensorsFile open(const std::filesystem::path& path);

  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;
  ~SafetensorsFile();

  const std::filesystem::path& path() const { return path_; }
  // In the order of their data offsets.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  // nullptr if absent.
  const TensorInfo* find(std::string_view name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  uint64_t file_size() const;

  TensorView view(const TensorInfo& t) const;
  // Hint that a tensor's pages will not be read again soon: drops them from this process's
  // resident set (the page cache keeps them). Keeps RSS bounded while streaming a large model.
  void release(const TensorInfo& t) const;
  // The same for bytes [byte_offset, byte_offset + n) of one tensor's data (clamped to it).
  void release(const TensorInfo& t, uint64_t byte_offset, uint64_t n) const;

 private:
  SafetensorsFile() = default;

  std::filesystem::path path_;
  std::unique_ptr<MappedFile> file_;
  uint64_t data_start_ = 0;  // 8 + header length
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

struct OutputTensorSpec {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;

  uint64_t nbytes() const { return static_cast<uint64_t>(shape_numel(shape)) * dtype_size(dtype); }
};

// Writes a known list of tensors into one or more safetensors files in `dir`. All headers are
// known up front, so every file is created at its final size and tensor bytes may be written in
// any order, from any thread. Tensors are packed into shards in the given order; a shard is
// closed before it would exceed `shard_size` bytes of tensor data (a single larger tensor gets a
// shard of its own). One shard is named model.safetensors; several are named
// model-00001-of-0000N.safetensors and come with model.safetensors.index.json.
// The caller chooses `dir` (a temporary folder it renames when everything is complete).
class SafetensorsWriter {
 public:
  SafetensorsWriter(std::filesystem::path dir, std::vector<OutputTensorSpec> tensors,
                    uint64_t shard_size,
                    std::map<std::string, std::string> metadata = {{"format", "pt"}});
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  const std::vector<OutputTensorSpec>& tensors() const { return tensors_; }
  // Writes `n` bytes at `byte_offset` within tensor `tensor_index`'s data. Thread-safe.
  void write(size_t tensor_index, uint64_t byte_offset, const void* data, size_t n);
  // Flushes and closes every shard and writes the index file when there are several shards.
  // Throws IoError if any write failed.
  void finish();
  // File names written (shards, then the index if any), relative to dir.
  std::vector<std::string> file_names() const;

 private:
  struct Shard;
  struct Placement {
    size_t shard;
    uint64_t file_offset;  // absolute offset in the shard file of the tensor's first byte
  };

  std::filesystem::path dir_;
  std::vector<OutputTensorSpec> tensors_;
  std::vector<Placement> placements_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::map<std::string, std::string> metadata_;
  bool finished_ = false;
};

}  // namespace shoal
