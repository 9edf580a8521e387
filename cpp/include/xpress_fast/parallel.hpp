// Splitting loops over threads (std::thread only; the kernels run without the GIL).
#pragma once

#include <cstdint>
#include <thread>
#include <vector>

namespace xpress_fast {
namespace detail {

// Runs fn(begin, end) over [0, n) split among n_threads threads.
template <typename Fn>
void parallel_for(std::int64_t n, int n_threads, Fn fn) {
  if (n_threads <= 1 || n < 2 * n_threads) {
    fn(std::int64_t(0), n);
    return;
  }
  std::vector<std::thread> threads;
  for (int t = 1; t < n_threads; ++t)
    threads.emplace_back(fn, n * t / n_threads, n * (t + 1) / n_threads);
  fn(std::int64_t(0), n / n_threads);
  for (auto& th : threads) th.join();
}

}  // namespace detail
}  // namespace xpress_fast
