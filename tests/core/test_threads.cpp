// Thread placement: set_num_threads pins OpenMP worker i to the i-th CPU the process may use,
// unless the user placed threads through the OpenMP environment variables.
#include <gtest/gtest.h>
#include <omp.h>
#include <pthread.h>
#include <sched.h>

#include <cstdlib>
#include <vector>

#include "core/backend.h"

namespace bidora {
namespace {

std::vector<int> cpus_of(const cpu_set_t& set) {
  std::vector<int> out;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &set)) out.push_back(c);
  return out;
}

TEST(Threads, PinsEachWorkerToItsOwnCpu) {
  if (std::getenv("OMP_PROC_BIND") || std::getenv("OMP_PLACES") || std::getenv("GOMP_CPU_AFFINITY"))
    GTEST_SKIP() << "thread placement set in the environment";
  cpu_set_t process;
  ASSERT_EQ(sched_getaffinity(0, sizeof(process), &process), 0);
  const std::vector<int> allowed = cpus_of(process);
  const int threads = static_cast<int>(allowed.size());
  const int before = num_threads();

  set_num_threads(threads);
  std::vector<std::vector<int>> seen(threads);
#pragma omp parallel num_threads(threads)
  {
    cpu_set_t mine;
    if (pthread_getaffinity_np(pthread_self(), sizeof(mine), &mine) == 0)
      seen[omp_get_thread_num()] = cpus_of(mine);
  }
  for (int i = 0; i < threads; ++i) EXPECT_EQ(seen[i], std::vector<int>{allowed[i]}) << "thread " << i;

  // More threads than CPUs: no pinning.
  set_num_threads(threads + 1);
  EXPECT_EQ(pin_threads_to_cores(), 0);

  // Give every pool thread the whole process mask back, so later tests run unconstrained.
  set_num_threads(threads);
#pragma omp parallel num_threads(threads)
  pthread_setaffinity_np(pthread_self(), sizeof(process), &process);
  set_num_threads(before);
#pragma omp parallel num_threads(before)
  pthread_setaffinity_np(pthread_self(), sizeof(process), &process);
}

}  // namespace
}  // namespace bidora
