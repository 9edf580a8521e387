// Splitting loops over threads (std::thread only; the kernels run without the GIL). Every kernel
// starts its threads here, through run_threads (fixed parts), parallel_for (a range cut into
// equal parts) or for_each_task (tasks taken in turn): nowhere else may construct a std::thread
// or ask for hardware_concurrency (the Python side chooses every thread count).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <thread>
#include <vector>

namespace xpress_fast {
namespace detail {

// Below about a million items (voxels, array elements) a loop is done before more threads
// would have started and split it: the kernels run such loops on one thread (or two halves).
constexpr std::int64_t kItemsPerThread = std::int64_t(1) << 20;

// Allocates this thread's block of libstdc++'s thread-local data (the exception globals,
// __cxa_get_globals) now, while memory is still to be had. libstdc++ reaches the process by
// dlopen with the extension modules, so glibc gives its thread-local data to each thread lazily,
// by malloc, on first use, which is the first exception thrown or caught in that thread; when
// that malloc fails glibc prints "cannot allocate memory for thread-local data: ABORT" and exits
// (status 127), which no handler can catch. A kernel thread's first exception is typically a
// bad_alloc under a memory limit, exactly when that malloc fails too; after this call the throw
// needs no allocation (the exception object comes from libstdc++'s emergency pool) and reaches
// Python as MemoryError. Measured with glibc 2.36 and GCC 12: a thread that exhausts the address
// space and then throws exits 127 without this call and catches the exception with it.
// Residual risk: this allocation (a page at most) itself failing right after the thread's stack
// was mapped still ends the process. The kernels use no thread_local of their own (pybind11's
// loader_life_support frame is thread_local but only touched on the Python thread that calls in).
inline void touch_exception_tls() noexcept {
  volatile int pending = std::uncaught_exceptions();  // volatile: the call is declared pure
  static_cast<void>(pending);
}

// Runs work(t) for every t in [0, n_threads), t = 0 on the calling thread. The parts are fixed by
// n_threads; when a thread cannot be started (std::system_error from pthread_create, e.g. no
// address space for its stack, or bad_alloc) no further one is tried and the calling thread runs
// the parts left over after its own, so the results never depend on how many threads started.
// An exception escaping a std::thread would terminate the process (a bad_alloc must reach Python
// as MemoryError), so each part's exception is caught, every started thread joined, and the
// first exception (by part) rethrown here.
template <typename Work>
void run_threads(int n_threads, Work work) {
  if (n_threads < 1) n_threads = 1;
  touch_exception_tls();
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(n_threads));
  auto guarded = [&](int t) noexcept {
    try {
      work(t);
    } catch (...) {
      errors[static_cast<std::size_t>(t)] = std::current_exception();
    }
  };
  std::vector<std::thread> threads;
  int started = 1;  // parts [1, started) have a thread
  try {
    threads.reserve(static_cast<std::size_t>(n_threads - 1));  // emplace_back then never reallocates
    for (; started < n_threads; ++started)
      threads.emplace_back([&guarded](int t) noexcept {
        touch_exception_tls();
        guarded(t);
      }, started);
  } catch (...) {  // no more threads to be had (a failed emplace_back leaves no thread behind)
  }
  guarded(0);
  for (int t = started; t < n_threads; ++t) guarded(t);
  for (auto& th : threads) th.join();
  for (auto& err : errors)
    if (err) std::rethrow_exception(err);
}

// Runs fn(begin, end) over [0, n) split among n_threads threads (parts n*t/n_threads to
// n*(t+1)/n_threads; one part when n < 2 * n_threads).
template <typename Fn>
void parallel_for(std::int64_t n, int n_threads, Fn fn) {
  if (n_threads <= 1 || n < 2 * n_threads) {
    fn(std::int64_t(0), n);
    return;
  }
  run_threads(n_threads, [&](int t) { fn(n * t / n_threads, n * (t + 1) / n_threads); });
}

// Runs fn(state, task) for every task in [0, n_tasks) on up to n_threads threads, each thread
// taking the next task when it finishes one (tasks of uneven cost balance themselves); make()
// gives each thread its own state (buffers reused across its tasks). Which thread runs a task
// must not change its result.
template <typename Make, typename Fn>
void for_each_task(std::int64_t n_tasks, int n_threads, Make make, Fn fn) {
  std::atomic<std::int64_t> next{0};
  run_threads(static_cast<int>(std::min<std::int64_t>(n_threads, n_tasks)), [&](int) {
    auto state = make();
    for (std::int64_t task = next++; task < n_tasks; task = next++) fn(state, task);
  });
}

}  // namespace detail
}  // namespace xpress_fast
