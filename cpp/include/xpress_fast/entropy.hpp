// Shannon entropy (bits) of a table of counts, and the sum of squared counts beside it: the
// two quantities every Rand / VOI variant is built from.
#pragma once

#include <cmath>

namespace xpress_fast {

namespace detail {

// -sum p log2 p over counts c / total, computed as log2(total) - sum c log2 c / total; also
// accumulates sum c^2.
template <typename Counts>
double entropy_bits(const Counts& counts, double total, double& sum_sq) {
  double s = 0.0;
  for (double c : counts)
    if (c > 0) {
      s += c * std::log2(c);
      sum_sq += c * c;
    }
  if (total <= 0) return 0.0;
  const double h = std::log2(total) - s / total;
  return h < 0 ? 0.0 : h;
}

}  // namespace detail

}  // namespace xpress_fast
