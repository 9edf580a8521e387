// Splitting loops over threads (std::thread only; the kernels run without the GIL).
#pragma once

#include <cstdint>
#include <exception>
#include <thread>
#include <vector>

namespace xpress_fast {
namespace detail {

// Runs work(t) for t in [0, n_threads), t = 0 on the calling thread. An exception escaping a
// std::thread would terminate the process (a bad_alloc must reach Python as MemoryError), so each
// one is caught, every thread joined, and the first rethrown here.
template <typename Work>
void run_threads(int n_threads, Work work) {
  if (n_threads < 1) n_threads = 1;
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(n_threads));
  auto guarded = [&](int t) {
    try {
      work(t);
    } catch (...) {
      errors[static_cast<std::size_t>(t)] = std::current_exception();
    }
  };
  std::vector<std::thread> threads;
  int started = 1;
  try {
    for (; started < n_threads; ++started) threads.emplace_back(guarded, started);
  } catch (...) {  // no more threads to be had: this one does the parts left over
  }
  guarded(0);
  for (int t = started; t < n_threads; ++t) guarded(t);
  for (auto& th : threads) th.join();
  for (auto& err : errors)
    if (err) std::rethrow_exception(err);
}

// Runs fn(begin, end) over [0, n) split among n_threads threads.
template <typename Fn>
void parallel_for(std::int64_t n, int n_threads, Fn fn) {
  if (n_threads <= 1 || n < 2 * n_threads) {
    fn(std::int64_t(0), n);
    return;
  }
  run_threads(n_threads, [&](int t) { fn(n * t / n_threads, n * (t + 1) / n_threads); });
}

}  // namespace detail
}  // namespace xpress_fast
