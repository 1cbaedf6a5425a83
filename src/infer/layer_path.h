// A LayerPath's checks and weights (Model::load_path, include/shoal/model.h): every source
// validated, all compatible with the head source, each step bound to a view of its source's
// layer. Implemented in src/infer/layer_path.cpp.
#pragma once

#include <memory>
#include <vector>

#include "infer/forward.h"
#include "shoal/model.h"

namespace shoal::infer {

struct PathModel {
  ModelConfig config;  // the head source's, with n_layers = the number of steps
  ModelWeights weights;
};

// Throws ConfigError (one line naming the sources and the key or step) when a source is null or
// invalid, two sources disagree on the architecture or on anything a layer depends on, a step
// names an unknown source or layer, or a scale is not finite; FormatError for a bad tensor.
PathModel bind_path(const std::vector<std::shared_ptr<const WeightSource>>& sources,
                    const LayerPath& path, const BindOptions& options);

}  // namespace shoal::infer
