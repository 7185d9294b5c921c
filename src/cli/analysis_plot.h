#pragma once
// The weight-decomposition scatter plot of `bidora analyze` as one self-contained SVG file (no
// scripts or fonts to fetch): ΔD (direction change) on x against ΔM (magnitude change) on y, one
// point per adapted linear and adapter/checkpoint, one colour per module kind with its
// least-squares line, one marker shape per adapter/checkpoint, axis titles and a legend giving
// each kind's slope k. Hovering a point shows its layer, module, source and values (<title>).
//
//   write_file_atomic(path, weight_decomposition_svg(samples, "tiny-qwen2 · dora r=8"));
//
// NaN/inf points are skipped and counted in the subtitle; no points gives an empty frame with a
// message; a constant axis is padded so its points sit mid-panel. Text is XML-escaped.
#include <span>
#include <string>

#include "adapters/weight_decomposition.h"

namespace bidora::cli {

struct DecompositionSample {
  std::string source;  // the adapter or checkpoint the point comes from (marker shape, tooltip)
  DecompositionPoint point;
};

// `title` is the first line (escaped here); the subtitle gives the point count and the slope over
// all modules.
std::string weight_decomposition_svg(std::span<const DecompositionSample> samples, const std::string& title);

}  // namespace bidora::cli
