// Shannon entropies (bits) and sums of squared counts of a contingency table and its two
// marginals: the six numbers every Rand / VOI variant is built from.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

namespace xpress_fast {

// c log2 c, the term each count adds to an entropy.
struct CountLog {
  double operator()(double c) const { return c * std::log2(c); }
};

// c log2 c for the integer counts 0..max_count, computed once with CountLog (so the values are
// the same bits): scoring many label vectors over the same nodes then costs a table read per
// count instead of a log2.
class CountLogTable {
 public:
  explicit CountLogTable(std::int64_t max_count = 0) : table_(static_cast<size_t>(max_count) + 1, 0.0) {
    for (std::int64_t c = 1; c <= max_count; ++c) table_[static_cast<size_t>(c)] = CountLog()(static_cast<double>(c));
  }
  // `c` must be an integer in 0..max_count.
  double operator()(double c) const { return table_[static_cast<size_t>(c)]; }

 private:
  std::vector<double> table_;
};

namespace detail {

// -sum p log2 p over counts c / total, computed as log2(total) - sum c log2 c / total; also
// accumulates sum c^2.
template <typename Counts, typename CLog>
double entropy_bits(const Counts& counts, double total, double& sum_sq, const CLog& clog) {
  double s = 0.0;
  for (double c : counts)
    if (c > 0) {
      s += clog(c);
      sum_sq += c * c;
    }
  if (total <= 0) return 0.0;
  const double h = std::log2(total) - s / total;
  return h < 0 ? 0.0 : h;
}

}  // namespace detail

struct ContingencySums {
  double sum_n2 = 0, sum_a2 = 0, sum_b2 = 0;    // squared table entries / truth / test marginals
  double h_joint = 0, h_truth = 0, h_test = 0;  // entropies, bits
};

// From the table entries n_ij, the truth marginals a_i and the test marginals b_j over `total`;
// `clog(c)` gives c log2 c (CountLog, or a CountLogTable for small integer counts).
template <typename Joint, typename Truth, typename Test, typename CLog = CountLog>
ContingencySums contingency_sums(const Joint& nij, const Truth& ai, const Test& bj, double total,
                                 const CLog& clog = CLog()) {
  ContingencySums out;
  out.h_joint = detail::entropy_bits(nij, total, out.sum_n2, clog);
  out.h_truth = detail::entropy_bits(ai, total, out.sum_a2, clog);
  out.h_test = detail::entropy_bits(bj, total, out.sum_b2, clog);
  return out;
}

}  // namespace xpress_fast
