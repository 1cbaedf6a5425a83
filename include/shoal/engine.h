// A model ready to run: the engine's Model and the Tokenizer that goes with it, loaded from one
// path (an HF folder: its safetensors and tokenizer files; a .gguf file: its tensors and its
// tokenizer.ggml.* vocabulary). Implemented in src/infer/engine.cpp.
#pragma once

#include <filesystem>
#include <vector>

#include "shoal/model.h"
#include "shoal/tokenizer.h"

namespace shoal {

struct LoadedModel {
  Model model;
  Tokenizer tokenizer;
};

// Throws the errors of Model::load and the tokenizer constructors (one line naming the file).
LoadedModel load_model(const std::filesystem::path& path, const ModelOptions& options = {});

// A LayerPath model (Model::load_path) over the models at `paths` (folders or .gguf files, in
// source order), with the head source's tokenizer.
LoadedModel load_path_model(const std::vector<std::filesystem::path>& paths, const LayerPath& path,
                            const ModelOptions& options = {});

// The tokenizer stored with a model: tokenizer files of a folder, or a GGUF's vocabulary.
Tokenizer load_tokenizer(const std::filesystem::path& model_path);

}  // namespace shoal
