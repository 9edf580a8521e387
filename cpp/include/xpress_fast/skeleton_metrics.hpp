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
//   * Rand / VOI over the distinct node voxels; the truth of a voxel is the highest skeleton index
//     among its nodes: the official raster writes skeleton after skeleton (in component order),
//     so a later skeleton overwrites a shared voxel. `skip_first_skeleton` leaves skeleton 0 out,
//     as the official raster uses index 0 for background (quirk 1).
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
#include "xpress_fast/pair_map.hpp"

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

// Scores many label vectors over one set of nodes (a threshold sweep). Everything that does not
// depend on the labels -- the input checks, nodes sorted by skeleton, each voxel's truth node,
// skeleton lengths -- is computed once in the constructor; the work buffers of `score` are kept
// between calls, so a call costs O(N + E) without allocating its tables again. With `many`, the
// entropies read c log2 c from a table (the same bits) built once, as a sweep would otherwise
// spend most of a call in log2. The arrays of `in` must outlive the scorer; `in.labels` is not
// used (each call names its labels).
class SkeletonScorer {
 public:
  explicit SkeletonScorer(const SkeletonScoreInput& in, bool many = false)
      : in_(in), use_table_(many), segment_of_label_(static_cast<size_t>(in.n_nodes)) {
    if (many) clog_table_ = CountLogTable(in.n_voxels);  // every count is at most n_voxels
    check_input();
    sort_nodes_by_skeleton();
    measure_skeletons();
  }

  // All scores of one label vector (n_nodes entries). With `details` false the per-edge and
  // per-node outputs (split_edges, node_segment, segment_merged) are left empty.
  SkeletonScores score(const std::uint64_t* labels, bool details = true) {
    SkeletonScores out;
    out.skeleton_length = skeleton_length_;
    out.total_length = total_length_;
    out.skeleton_erl.assign(static_cast<size_t>(in_.n_skeletons), 0.0);
    number_segments(labels);
    count_merges(out);
    score_edges(out, details);
    rand_voi(out);
    if (details) {
      out.node_segment = seg_;
      out.segment_merged = merged_;
    }
    return out;
  }

 private:
  void check_input() const {
    for (std::int64_t i = 0; i < in_.n_nodes; ++i) {
      if (in_.skeleton[i] < 0 || in_.skeleton[i] >= in_.n_skeletons)
        throw std::invalid_argument("skeleton index outside 0..n_skeletons-1");
      if (in_.voxel[i] < 0 || in_.voxel[i] >= in_.n_voxels)
        throw std::invalid_argument("voxel id outside 0..n_voxels-1");
    }
    for (std::int64_t e = 0; e < in_.n_edges; ++e) {
      const std::int64_t u = in_.edges[2 * e], v = in_.edges[2 * e + 1];
      if (u < 0 || v < 0 || u >= in_.n_nodes || v >= in_.n_nodes)
        throw std::invalid_argument("edge refers to a node index outside 0..n_nodes-1");
    }
  }

  // Nodes skeleton by skeleton (a counting sort), so that a per-segment stamp counts each
  // skeleton once, and Rand/VOI can emit a truth's row of the table when the truth changes.
  void sort_nodes_by_skeleton() {
    const std::int64_t n = in_.n_nodes, n_skel = in_.n_skeletons;
    by_skeleton_.assign(static_cast<size_t>(n), 0);
    first_.assign(static_cast<size_t>(n_skel) + 1, 0);
    for (std::int64_t i = 0; i < n; ++i) ++first_[in_.skeleton[i] + 1];
    for (std::int64_t s = 0; s < n_skel; ++s) first_[s + 1] += first_[s];
    std::vector<std::int64_t> fill(first_.begin(), first_.end() - 1);
    for (std::int64_t i = 0; i < n; ++i) by_skeleton_[fill[in_.skeleton[i]]++] = i;
  }

  // Skeleton lengths (summed in edge order, as every score adds them), and the node whose
  // skeleton is its voxel's truth: one of the highest skeleton index in it (the official raster
  // writes skeleton by skeleton, later ones overwriting shared voxels).
  void measure_skeletons() {
    skeleton_length_.assign(static_cast<size_t>(in_.n_skeletons), 0.0);
    for (std::int64_t e = 0; e < in_.n_edges; ++e) {
      const double len = in_.edge_length[e];
      skeleton_length_[in_.skeleton[in_.edges[2 * e]]] += len;
      total_length_ += len;
    }
    std::vector<std::int64_t> last_node(static_cast<size_t>(in_.n_voxels), -1);
    for (std::int64_t i = 0; i < in_.n_nodes; ++i) {
      std::int64_t& best = last_node[in_.voxel[i]];
      if (best < 0 || in_.skeleton[i] >= in_.skeleton[best]) best = i;
    }
    voxel_truth_.assign(static_cast<size_t>(in_.n_nodes), 0);
    for (std::int64_t v = 0; v < in_.n_voxels; ++v)
      if (last_node[v] >= 0) voxel_truth_[last_node[v]] = 1;
  }

  // 1. Dense segment ids in node order. A label-0 voxel is a fresh segment of its own.
  void number_segments(const std::uint64_t* labels) {
    const std::int64_t n = in_.n_nodes;
    seg_.assign(static_cast<size_t>(n), -1);
    fresh_.clear();
    fresh_of_voxel_.assign(static_cast<size_t>(in_.n_voxels), -1);
    segment_of_label_.clear();
    // Consecutive nodes along a skeleton mostly share a label: remember the last lookup.
    std::uint64_t last_label = 0;
    std::int64_t last_segment = -1;
    for (std::int64_t i = 0; i < n; ++i) {
      if (labels[i] == 0) {
        std::int64_t& id = fresh_of_voxel_[in_.voxel[i]];
        if (id < 0) {
          id = static_cast<std::int64_t>(fresh_.size());
          fresh_.push_back(1);
        }
        seg_[i] = id;
      } else if (labels[i] == last_label && last_segment >= 0) {
        seg_[i] = last_segment;
      } else {
        bool inserted;
        std::uint64_t& id = segment_of_label_.value(labels[i], 0, inserted);
        if (inserted) {
          id = fresh_.size();
          fresh_.push_back(0);
        }
        seg_[i] = last_segment = static_cast<std::int64_t>(id);
        last_label = labels[i];
      }
    }
    n_seg_ = static_cast<std::int64_t>(fresh_.size());
  }

  // 2. Skeletons per segment -> merged segments and the merge count.
  void count_merges(SkeletonScores& out) {
    skeletons_on_.assign(static_cast<size_t>(n_seg_), 0);
    stamp_.assign(static_cast<size_t>(n_seg_), -1);
    for (std::int64_t i : by_skeleton_) {
      const std::int64_t g = seg_[i];
      if (stamp_[g] != in_.skeleton[i]) {
        stamp_[g] = in_.skeleton[i];
        ++skeletons_on_[g];
      }
    }
    merged_.assign(static_cast<size_t>(n_seg_), 0);
    for (std::int64_t g = 0; g < n_seg_; ++g) {
      if (in_.zero_is_unsegmented && fresh_[g]) continue;
      const std::int64_t k = skeletons_on_[g];
      if (k >= 2) {
        merged_[g] = 1;
        out.merge_count += k * (k - 1) / 2;
      }
    }
  }

  // 3. Edges: split / merged / correct, the correct length per segment, and the ERL.
  void score_edges(SkeletonScores& out, bool details) {
    correct_.assign(static_cast<size_t>(n_seg_), 0.0);
    segment_skeleton_.assign(static_cast<size_t>(n_seg_), -1);
    for (std::int64_t e = 0; e < in_.n_edges; ++e) {
      const std::int64_t u = in_.edges[2 * e], v = in_.edges[2 * e + 1];
      const std::int64_t g = seg_[u];
      const bool unsegmented = in_.zero_is_unsegmented && (fresh_[g] || fresh_[seg_[v]]);
      if (g != seg_[v] || unsegmented) {
        ++out.split_count;
        if (details) out.split_edges.push_back(e);
      } else if (!merged_[g]) {
        correct_[g] += in_.edge_length[e];
        segment_skeleton_[g] = in_.skeleton[u];
      }
    }
    double sum_c2 = 0.0;
    for (std::int64_t g = 0; g < n_seg_; ++g) {
      if (segment_skeleton_[g] < 0) continue;
      const double c2 = correct_[g] * correct_[g];
      sum_c2 += c2;
      out.skeleton_erl[segment_skeleton_[g]] += c2;
    }
    out.erl = out.total_length > 0 ? sum_c2 / out.total_length : std::numeric_limits<double>::quiet_NaN();
    for (std::int64_t s = 0; s < in_.n_skeletons; ++s)
      out.skeleton_erl[s] = out.skeleton_length[s] > 0 ? out.skeleton_erl[s] / out.skeleton_length[s] : 0.0;
  }

  // 4. Rand / VOI over distinct node voxels. Voxels are visited truth by truth, n_ij counted per
  //    segment with stamps and emitted when the truth changes.
  void rand_voi(SkeletonScores& out) {
    truth_count_.assign(static_cast<size_t>(in_.n_skeletons), 0.0);
    test_count_.assign(static_cast<size_t>(n_seg_), 0.0);
    cell_.assign(static_cast<size_t>(n_seg_), 0.0);
    nij_.clear();
    std::fill(stamp_.begin(), stamp_.end(), -1);
    for (std::int64_t s = 0; s < in_.n_skeletons; ++s) {
      if (in_.skip_first_skeleton && s == 0) continue;
      touched_.clear();
      for (std::int64_t k = first_[s]; k < first_[s + 1]; ++k) {
        const std::int64_t node = by_skeleton_[k];
        if (!voxel_truth_[node]) continue;
        const std::int64_t g = seg_[node];
        if (stamp_[g] != s) {
          stamp_[g] = s;
          cell_[g] = 0.0;
          touched_.push_back(g);
        }
        cell_[g] += 1;
        truth_count_[s] += 1;
        test_count_[g] += 1;
        ++out.n_voxels;
      }
      for (std::int64_t g : touched_) nij_.push_back(cell_[g]);
    }
    const double total = static_cast<double>(out.n_voxels);
    out.sums = use_table_ ? contingency_sums(nij_, truth_count_, test_count_, total, clog_table_)
                          : contingency_sums(nij_, truth_count_, test_count_, total);
  }

  SkeletonScoreInput in_;
  bool use_table_;
  CountLogTable clog_table_;
  // label-independent, from the constructor
  std::vector<std::int64_t> by_skeleton_, first_;
  std::vector<std::uint8_t> voxel_truth_;  // node i sets its voxel's truth
  std::vector<double> skeleton_length_;
  double total_length_ = 0.0;
  // per call; kept to reuse their memory
  PairCounter segment_of_label_;
  std::vector<std::int64_t> seg_, fresh_of_voxel_, skeletons_on_, stamp_, segment_skeleton_, touched_;
  std::vector<std::uint8_t> fresh_, merged_;
  std::vector<double> correct_, truth_count_, test_count_, cell_, nij_;
  std::int64_t n_seg_ = 0;
};

inline SkeletonScores score_skeleton_labels(const SkeletonScoreInput& in) {
  return SkeletonScorer(in).score(in.labels, true);
}

}  // namespace xpress_fast
