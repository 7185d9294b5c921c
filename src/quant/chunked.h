#pragma once
// Splits a flat element range into chunks for dequantisation, each spanning at most
// kMaxChunkBlocks blocks, so the chunk's block scales fit in a stack buffer (no allocation per
// call). Single-threaded on purpose: a dequantised tile feeds one GEMM that costs ~30x more, and
// an OpenMP fork/join per tile stalls badly when the cores are oversubscribed; callers that want
// parallelism split row ranges across their own threads (the matrices are immutable).
#include <algorithm>
#include <cstdint>

namespace bidora::quant::detail {

inline constexpr int64_t kChunkElements = 16384;
inline constexpr int64_t kMaxChunkBlocks = 1024;

// fn(chunk_begin, chunk_end) over [begin, end), in order.
template <class Fn>
void for_each_chunk(int64_t begin, int64_t end, int64_t blocksize, Fn&& fn) {
  const int64_t chunk = std::max<int64_t>(1, std::min(kChunkElements, (kMaxChunkBlocks - 2) * blocksize));
  for (int64_t cb = begin; cb < end; cb += chunk) fn(cb, std::min(end, cb + chunk));
}

}  // namespace bidora::quant::detail
