// shoal inspect for GGUF files: the metadata (every key, its type and value; long arrays cut
// short) and the tensor table, as text or one JSON object. Implemented in
// src/cli/inspect_gguf.cpp.
#pragma once

#include <filesystem>

namespace shoal::cli {

// A regular file named *.gguf or starting with the GGUF magic.
bool is_gguf_file(const std::filesystem::path& path);

// Opens (and so validates) the file and prints what it holds. Throws the reader's one-line
// errors.
void inspect_gguf(const std::filesystem::path& path, bool json);

}  // namespace shoal::cli
