// Where merges happen: for every merged segment and every pair of skeletons on it, the closest
// pair of their nodes on that segment (what a proofreader looks at).
//
// Per segment the nodes are grouped by skeleton; each pair of groups is scanned exhaustively,
// so the cost is sum over segments of (nodes on it)^2 at worst. It is only run when the
// locations are asked for, never while scoring.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace xpress_fast {

struct MergeLocation {
  std::int64_t segment, skeleton_a, skeleton_b, node_a, node_b;
  double distance;
};

// node_segment: dense segment per node; merged: flag per dense segment; positions (n, 3).
inline std::vector<MergeLocation> merge_locations(const std::int64_t* node_segment, const std::int64_t* skeleton,
                                                  const double* positions, std::int64_t n_nodes,
                                                  const std::uint8_t* merged) {
  std::vector<std::int64_t> order;
  for (std::int64_t i = 0; i < n_nodes; ++i)
    if (merged[node_segment[i]]) order.push_back(i);
  std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
    return node_segment[a] != node_segment[b] ? node_segment[a] < node_segment[b] : skeleton[a] < skeleton[b];
  });
  std::vector<MergeLocation> out;
  size_t begin = 0;
  while (begin < order.size()) {
    size_t end = begin;
    while (end < order.size() && node_segment[order[end]] == node_segment[order[begin]]) ++end;
    // group boundaries by skeleton within [begin, end)
    std::vector<size_t> starts;
    for (size_t k = begin; k < end; ++k)
      if (k == begin || skeleton[order[k]] != skeleton[order[k - 1]]) starts.push_back(k);
    starts.push_back(end);
    for (size_t p = 0; p + 1 < starts.size(); ++p) {
      for (size_t q = p + 1; q + 1 < starts.size(); ++q) {
        MergeLocation best{node_segment[order[begin]], skeleton[order[starts[p]]], skeleton[order[starts[q]]], -1, -1,
                           std::numeric_limits<double>::infinity()};
        for (size_t i = starts[p]; i < starts[p + 1]; ++i) {
          const double* pi = positions + 3 * order[i];
          for (size_t j = starts[q]; j < starts[q + 1]; ++j) {
            const double* pj = positions + 3 * order[j];
            const double dz = pi[0] - pj[0], dy = pi[1] - pj[1], dx = pi[2] - pj[2];
            const double d2 = dz * dz + dy * dy + dx * dx;
            if (d2 < best.distance) {
              best.distance = d2;
              best.node_a = order[i];
              best.node_b = order[j];
            }
          }
        }
        best.distance = std::sqrt(best.distance);
        out.push_back(best);
      }
    }
    begin = end;
  }
  return out;
}

}  // namespace xpress_fast
