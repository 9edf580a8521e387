// Scores of a segmentation against skeletons, from the segment label under each skeleton node.
//
// This is the per-node / per-edge core of the XPRESS evaluator (METRICS.md). Everything it
// needs from the volume is one label per node, so it runs in O(N + E) (one hash table for the
// labels; everything else by counting sort and stamps), never touches the volume, and can be
// called once per threshold of a sweep.
//
// Inputs (M nodes inside the ROI, E edges between them):
//   labels[i]   segment label under node i (0 = unlabelled)
//   voxel[i]    dense id 0..V-1 of node i's voxel (nodes sharing a voxel share its label)
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

#include "xpress_fast/entropy.hpp"
#include "xpress_fast/pair_counter.hpp"

namespace xpress_fast {

struct SkeletonScoreInput {
  const std::uint64_t* labels = nullptr;
  const std::int64_t* voxel = nullptr;  // dense voxel id per node, 0..n_voxels-1
  std::int64_t n_voxels = 0;
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
  ContingencySums sums;
};

inline SkeletonScores score_skeleton_labels(const SkeletonScoreInput& in) {
  const std::int64_t n = in.n_nodes;
  const std::int64_t n_skel = in.n_skeletons;
  SkeletonScores out;
  out.skeleton_length.assign(static_cast<size_t>(n_skel), 0.0);
  out.skeleton_erl.assign(static_cast<size_t>(n_skel), 0.0);
  for (std::int64_t i = 0; i < n; ++i) {
    if (in.skeleton[i] < 0 || in.skeleton[i] >= n_skel)
      throw std::invalid_argument("skeleton index outside 0..n_skeletons-1");
    if (in.voxel[i] < 0 || in.voxel[i] >= in.n_voxels)
      throw std::invalid_argument("voxel id outside 0..n_voxels-1");
  }

  // 1. Dense segment ids in node order. A label-0 voxel is a fresh segment of its own.
  out.node_segment.assign(static_cast<size_t>(n), -1);
  std::vector<std::int64_t>& seg = out.node_segment;
  std::vector<std::uint8_t> segment_fresh;
  std::vector<std::int64_t> fresh_of_voxel(static_cast<size_t>(in.n_voxels), -1);
  // Consecutive nodes along a skeleton mostly share a label: remember the last lookup.
  PairCounter segment_of_label(static_cast<size_t>(n));
  std::uint64_t last_label = 0;
  std::int64_t last_segment = -1;
  for (std::int64_t i = 0; i < n; ++i) {
    if (in.labels[i] == 0) {
      std::int64_t& id = fresh_of_voxel[in.voxel[i]];
      if (id < 0) {
        id = static_cast<std::int64_t>(segment_fresh.size());
        segment_fresh.push_back(1);
      }
      seg[i] = id;
    } else if (in.labels[i] == last_label && last_segment >= 0) {
      seg[i] = last_segment;
    } else {
      bool inserted;
      std::uint64_t& id = segment_of_label.value(in.labels[i], 0, inserted);
      if (inserted) {
        id = segment_fresh.size();
        segment_fresh.push_back(0);
      }
      seg[i] = last_segment = static_cast<std::int64_t>(id);
      last_label = in.labels[i];
    }
  }
  const std::int64_t n_seg = static_cast<std::int64_t>(segment_fresh.size());

  // 2. Skeletons per segment -> merged segments and the merge count. Nodes visited skeleton by
  //    skeleton (a counting sort), so a per-segment stamp counts each skeleton once.
  std::vector<std::int64_t> by_skeleton(static_cast<size_t>(n)), first(static_cast<size_t>(n_skel) + 1, 0);
  for (std::int64_t i = 0; i < n; ++i) ++first[in.skeleton[i] + 1];
  for (std::int64_t s = 0; s < n_skel; ++s) first[s + 1] += first[s];
  {
    std::vector<std::int64_t> fill(first.begin(), first.end() - 1);
    for (std::int64_t i = 0; i < n; ++i) by_skeleton[fill[in.skeleton[i]]++] = i;
  }
  std::vector<std::int64_t> skeletons_on(static_cast<size_t>(n_seg), 0), stamp(static_cast<size_t>(n_seg), -1);
  for (std::int64_t i : by_skeleton) {
    const std::int64_t g = seg[i];
    if (stamp[g] != in.skeleton[i]) {
      stamp[g] = in.skeleton[i];
      ++skeletons_on[g];
    }
  }
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

  // 4. Rand / VOI over distinct node voxels; the last node of a voxel sets its truth. Voxels
  //    are visited truth by truth (the skeleton order above), n_ij counted per segment with
  //    stamps and emitted when the truth changes.
  std::vector<std::int64_t> last_node(static_cast<size_t>(in.n_voxels), -1);
  for (std::int64_t i = 0; i < n; ++i) last_node[in.voxel[i]] = i;
  std::vector<double> truth_count(static_cast<size_t>(n_skel), 0.0), test_count(static_cast<size_t>(n_seg), 0.0);
  std::vector<double> nij, cell(static_cast<size_t>(n_seg), 0.0);
  std::vector<std::int64_t> touched;
  std::fill(stamp.begin(), stamp.end(), -1);
  for (std::int64_t s = 0; s < n_skel; ++s) {
    if (in.skip_first_skeleton && s == 0) continue;
    touched.clear();
    for (std::int64_t k = first[s]; k < first[s + 1]; ++k) {
      const std::int64_t node = by_skeleton[k];
      if (last_node[in.voxel[node]] != node) continue;
      const std::int64_t g = seg[node];
      if (stamp[g] != s) {
        stamp[g] = s;
        cell[g] = 0.0;
        touched.push_back(g);
      }
      cell[g] += 1;
      truth_count[s] += 1;
      test_count[g] += 1;
      ++out.n_voxels;
    }
    for (std::int64_t g : touched) nij.push_back(cell[g]);
  }
  const double total = static_cast<double>(out.n_voxels);
  out.sums = contingency_sums(nij, truth_count, test_count, total);
  return out;
}

}  // namespace xpress_fast
