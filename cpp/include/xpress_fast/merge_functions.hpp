// Edge statistics and merge functions for region agglomeration, with waterz's semantics.
//
// An edge between two regions carries the statistics of all boundary affinities between them:
// count, sum, min, max and a sparse 256-bin histogram (see region_graph.hpp). When two edges
// become one (two regions that share a neighbour merge), their statistics are combined exactly.
// The score of an edge is 1 - statistic, where the statistic is
//   mean      sum / count
//   max, min  the largest / smallest boundary affinity
//   quantile  the Q-th percentile from the histogram, waterz's HistogramQuantileProvider:
//             pivot = Q * total / 100 + 1 (integer division), the first bin whose cumulative
//             count reaches the pivot, value (bin + 0.5) / 256.
// `init_with_max` is waterz's InitWithMax flag (lsd's "hist_quant_Q_initmax"): the initial
// histogram of an edge holds a single count in the bin of its largest affinity.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "region_graph.hpp"

namespace xpress_fast {

// The statistic of a merge function; the Python side reads the codes from the module
// (_segment.STATISTIC_MEAN, ...), never spells them.
enum class Statistic : int { Mean = 0, Max = 1, Min = 2, Quantile = 3 };

struct MergeFunction {
  Statistic statistic = Statistic::Mean;
  int quantile = 50;  // percent, for Statistic::Quantile
  bool init_with_max = false;
  bool needs_histogram() const { return statistic == Statistic::Quantile; }
};

struct EdgeStatistics {
  std::uint64_t count = 0;
  double sum = 0.0;
  float min = 1.0f, max = 0.0f;
  SparseHistogram hist;  // sorted by bin
};

// Quantile value of a bin-sorted sparse histogram, waterz's rule.
inline double histogram_quantile(const SparseHistogram& h, int q) {
  std::uint64_t total = 0;
  for (auto e : h) total += entry_count(e);
  const std::uint64_t pivot = static_cast<std::uint64_t>(q) * total / 100 + 1;
  std::uint64_t cum = 0;
  int bin = kHistogramBins - 1;
  for (auto e : h) {
    cum += entry_count(e);
    if (cum >= pivot) {
      bin = entry_bin(e);
      break;
    }
  }
  // waterz: undiscretize<float>(bin, 256), exact in float
  return (static_cast<double>(bin) + 0.5) / kHistogramBins;
}

inline double edge_score(const MergeFunction& f, const EdgeStatistics& s) {
  double stat = 0.0;
  switch (f.statistic) {
    case Statistic::Mean: stat = s.count ? s.sum / static_cast<double>(s.count) : 0.0; break;
    case Statistic::Max: stat = s.max; break;
    case Statistic::Min: stat = s.min; break;
    case Statistic::Quantile: stat = histogram_quantile(s.hist, f.quantile); break;
  }
  return 1.0 - stat;
}

// Sorted merge of two bin-sorted sparse histograms.
inline SparseHistogram histogram_merge(const SparseHistogram& a, const SparseHistogram& b) {
  SparseHistogram out;
  out.reserve(std::max(a.size(), b.size()));
  std::size_t i = 0, j = 0;
  while (i < a.size() || j < b.size()) {
    if (j == b.size() || (i < a.size() && entry_bin(a[i]) < entry_bin(b[j]))) {
      out.push_back(a[i++]);
    } else if (i == a.size() || entry_bin(b[j]) < entry_bin(a[i])) {
      out.push_back(b[j++]);
    } else {  // the same bin: the counts add
      out.push_back(a[i++] + histogram_entry(entry_count(b[j++]), 0));
    }
  }
  return out;
}

// Adds `from` into `to`; returns whether the merge function's statistic of `to` may have
// changed (waterz's notifyEdgeMerge result, which decides whether `to` becomes stale).
inline bool merge_statistics(const MergeFunction& f, EdgeStatistics& to, EdgeStatistics& from) {
  const float old_min = to.min, old_max = to.max;
  to.count += from.count;
  to.sum += from.sum;
  to.min = std::min(to.min, from.min);
  to.max = std::max(to.max, from.max);
  if (f.needs_histogram()) {
    to.hist = histogram_merge(to.hist, from.hist);
    SparseHistogram().swap(from.hist);
  }
  switch (f.statistic) {
    case Statistic::Max: return to.max != old_max;
    case Statistic::Min: return to.min != old_min;
    default: return true;
  }
}

}  // namespace xpress_fast
