// Scores of a segmentation against skeletons, from the segment label under each skeleton node.
//
// This is the per-node / per-edge core of the XPRESS evaluator (METRICS.md). Everything it
// needs from the volume is one label per node, so it runs in O(N log N) of the node count,
// never touches the volume, and can be called once per threshold of a sweep.
//
// Inputs (M nodes inside the ROI, E edges between them):
//   labels[i]   segment label under node i (0 = unlabelled)
//   voxel[i]    linear index of node i's voxel (nodes sharing a voxel share its label)
//   skeleton[i] skeleton index 0..S-1 of node i
//   edges       (E, 2) node indices, edge_length[e] in nm
//
// Definitions, with the official quirks switchable:
//   * label 0 under a node: the voxel becomes its own fresh segment (official quirk 3). With
//     `zero_is_unsegmented`, an edge touching such a segment is never correct and the segment
//     never counts as a merge (corrected mode).
//   * merged segments M: segments whose nodes carry >= 2 skeletons. An edge (u, v) is a split
//     if its segments differ, merged if equal and in M, correct otherwise.
//   * ERL = sum over (skeleton, segment) of C^2 / L, C the correct length of a skeleton on a
//     segment, L the total edge length. A correct segment holds exactly one skeleton, so C is
//     indexed by segment alone.
//   * Rand / VOI over the distinct node voxels; the truth of a voxel is the skeleton of its last
//     node in node order (later writes win). `skip_first_skeleton` leaves skeleton 0 out, as the
//     official raster uses index 0 for background (quirk 1).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <utility>
#include <vector>

namespace xpress_fast {

struct SkeletonScoreInput {
  const std::uint64_t* labels = nullptr;
  const std::int64_t* voxel = nullptr;
  const std::int64_t* skeleton = nullptr;
  std::int64_t n_nodes = 0;
  std::int64_t n_skeletons = 0;
  const std::int64_t* edges = nullptr;
  const double* edge_length = nullptr;
  std::int64_t n_edges = 0;
  bool skip_first_skeleton = true;   // official quirk 1
  bool zero_is_unsegmented = false;  // corrected mode for label-0 nodes
};

struct SkeletonScores {
  double erl = 0.0;
  double total_length = 0.0;
  std::vector<double> skeleton_length;  // L_s
  std::vector<double> skeleton_erl;     // sum_g C[s,g]^2 / L_s (0 where L_s = 0)
  std::int64_t split_count = 0;
  std::int64_t merge_count = 0;  // sum over segments of C(k, 2), k skeletons on the segment
  std::vector<std::int64_t> split_edges;   // indices of split edges
  std::vector<std::int64_t> node_segment;  // dense segment index per node
  std::vector<std::uint8_t> segment_merged;
  // Rand / VOI over node voxels
  std::int64_t n_voxels = 0;
  double sum_n2 = 0.0, sum_a2 = 0.0, sum_b2 = 0.0;
  double h_truth = 0.0, h_test = 0.0, h_joint = 0.0;  // bits
};

namespace detail {

// -sum p log2 p over counts c / total, computed as log2(total) - sum c log2 c / total.
inline double entropy_bits(const std::vector<double>& counts, double total) {
  if (total <= 0) return 0.0;
  double s = 0.0;
  for (double c : counts)
    if (c > 0) s += c * std::log2(c);
  const double h = std::log2(total) - s / total;
  return h < 0 ? 0.0 : h;
}

// Runs of equal values in a sorted vector: calls f(value, count) for each run.
template <typename T, typename F>
void for_each_run(const std::vector<T>& sorted, F&& f) {
  size_t i = 0;
  while (i < sorted.size()) {
    size_t j = i + 1;
    while (j < sorted.size() && sorted[j] == sorted[i]) ++j;
    f(sorted[i], static_cast<double>(j - i));
    i = j;
  }
}

}  // namespace detail

inline SkeletonScores score_skeleton_labels(const SkeletonScoreInput& in) {
  const std::int64_t n = in.n_nodes;
  const std::int64_t n_skel = in.n_skeletons;
  SkeletonScores out;
  out.skeleton_length.assign(static_cast<size_t>(n_skel), 0.0);
  out.skeleton_erl.assign(static_cast<size_t>(n_skel), 0.0);
  for (std::int64_t i = 0; i < n; ++i)
    if (in.skeleton[i] < 0 || in.skeleton[i] >= n_skel)
      throw std::invalid_argument("skeleton index outside 0..n_skeletons-1");

  // 1. Dense segment ids. Label-0 nodes are keyed by their voxel (a fresh segment per voxel).
  struct Key {
    std::uint64_t is_fresh, value;
    std::int64_t node;
  };
  std::vector<Key> keys(static_cast<size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    const bool fresh = in.labels[i] == 0;
    keys[i] = {fresh ? 1u : 0u, fresh ? static_cast<std::uint64_t>(in.voxel[i]) : in.labels[i], i};
  }
  std::sort(keys.begin(), keys.end(), [](const Key& a, const Key& b) {
    return a.is_fresh != b.is_fresh ? a.is_fresh < b.is_fresh : a.value < b.value;
  });
  out.node_segment.assign(static_cast<size_t>(n), -1);
  std::vector<std::uint8_t> segment_fresh;
  std::int64_t n_seg = 0;
  for (size_t k = 0; k < keys.size(); ++k) {
    if (k == 0 || keys[k].is_fresh != keys[k - 1].is_fresh || keys[k].value != keys[k - 1].value) {
      ++n_seg;
      segment_fresh.push_back(static_cast<std::uint8_t>(keys[k].is_fresh));
    }
    out.node_segment[keys[k].node] = n_seg - 1;
  }
  const std::vector<std::int64_t>& seg = out.node_segment;

  // 2. Skeletons per segment -> merged segments and the merge count.
  std::vector<std::int64_t> seg_skel(static_cast<size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) seg_skel[i] = seg[i] * n_skel + in.skeleton[i];
  std::sort(seg_skel.begin(), seg_skel.end());
  seg_skel.erase(std::unique(seg_skel.begin(), seg_skel.end()), seg_skel.end());
  std::vector<std::int64_t> skeletons_on(static_cast<size_t>(n_seg), 0);
  for (std::int64_t key : seg_skel) ++skeletons_on[key / n_skel];
  out.segment_merged.assign(static_cast<size_t>(n_seg), 0);
  for (std::int64_t g = 0; g < n_seg; ++g) {
    if (in.zero_is_unsegmented && segment_fresh[g]) continue;
    const std::int64_t k = skeletons_on[g];
    if (k >= 2) {
      out.segment_merged[g] = 1;
      out.merge_count += k * (k - 1) / 2;
    }
  }

  // 3. Edges: split / merged / correct, and the correct length per segment.
  std::vector<double> correct(static_cast<size_t>(n_seg), 0.0);
  std::vector<std::int64_t> segment_skeleton(static_cast<size_t>(n_seg), -1);
  for (std::int64_t e = 0; e < in.n_edges; ++e) {
    const std::int64_t u = in.edges[2 * e], v = in.edges[2 * e + 1];
    if (u < 0 || v < 0 || u >= n || v >= n)
      throw std::invalid_argument("edge refers to a node index outside 0..n_nodes-1");
    const double len = in.edge_length[e];
    out.skeleton_length[in.skeleton[u]] += len;
    out.total_length += len;
    const std::int64_t g = seg[u];
    const bool unsegmented = in.zero_is_unsegmented && (segment_fresh[g] || segment_fresh[seg[v]]);
    if (g != seg[v] || unsegmented) {
      ++out.split_count;
      out.split_edges.push_back(e);
    } else if (!out.segment_merged[g]) {
      correct[g] += len;
      segment_skeleton[g] = in.skeleton[u];
    }
  }
  double sum_c2 = 0.0;
  for (std::int64_t g = 0; g < n_seg; ++g) {
    if (segment_skeleton[g] < 0) continue;
    const double c2 = correct[g] * correct[g];
    sum_c2 += c2;
    out.skeleton_erl[segment_skeleton[g]] += c2;
  }
  out.erl = out.total_length > 0 ? sum_c2 / out.total_length : std::numeric_limits<double>::quiet_NaN();
  for (std::int64_t s = 0; s < n_skel; ++s)
    out.skeleton_erl[s] = out.skeleton_length[s] > 0 ? out.skeleton_erl[s] / out.skeleton_length[s] : 0.0;

  // 4. Rand / VOI over distinct node voxels; the last node of a voxel sets its truth.
  std::vector<std::pair<std::int64_t, std::int64_t>> by_voxel(static_cast<size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) by_voxel[i] = {in.voxel[i], i};
  std::sort(by_voxel.begin(), by_voxel.end());
  std::vector<std::int64_t> pair_keys, truth_keys, test_keys;
  for (size_t k = 0; k < by_voxel.size(); ++k) {
    if (k + 1 < by_voxel.size() && by_voxel[k + 1].first == by_voxel[k].first) continue;
    const std::int64_t node = by_voxel[k].second;  // the last node writing this voxel
    const std::int64_t truth = in.skeleton[node];
    if (in.skip_first_skeleton && truth == 0) continue;
    pair_keys.push_back(truth * n_seg + seg[node]);
    truth_keys.push_back(truth);
    test_keys.push_back(seg[node]);
  }
  out.n_voxels = static_cast<std::int64_t>(pair_keys.size());
  std::sort(pair_keys.begin(), pair_keys.end());
  std::sort(truth_keys.begin(), truth_keys.end());
  std::sort(test_keys.begin(), test_keys.end());
  std::vector<double> nij, ai, bj;
  detail::for_each_run(pair_keys, [&](std::int64_t, double c) { nij.push_back(c); });
  detail::for_each_run(truth_keys, [&](std::int64_t, double c) { ai.push_back(c); });
  detail::for_each_run(test_keys, [&](std::int64_t, double c) { bj.push_back(c); });
  for (double c : nij) out.sum_n2 += c * c;
  for (double c : ai) out.sum_a2 += c * c;
  for (double c : bj) out.sum_b2 += c * c;
  const double total = static_cast<double>(out.n_voxels);
  out.h_joint = detail::entropy_bits(nij, total);
  out.h_truth = detail::entropy_bits(ai, total);
  out.h_test = detail::entropy_bits(bj, total);
  return out;
}

}  // namespace xpress_fast
