// Self-check of the ThreadSanitizer setup (scripts/tsan.sh), built outside the test binaries.
//   tsan_canary        threads hand data over through an OpenMP barrier: must report nothing.
//                      TSan sees libomp's barriers only through the Archer OMPT tool, so a report
//                      here means Archer is not loaded and every OpenMP test would be noise.
//   tsan_canary race   two threads increment one int unsynchronised: must be reported, or TSan
//                      does not see the OpenMP worker threads and a clean run would prove nothing.
#include <omp.h>

#include <cstdio>
#include <cstring>
#include <vector>

int main(int argc, char** argv) {
  const bool race = argc > 1 && std::strcmp(argv[1], "race") == 0;
  std::vector<int> written(static_cast<size_t>(omp_get_max_threads()), 0);
  int sum = 0;
  int shared = 0;
#pragma omp parallel
  {
    written[static_cast<size_t>(omp_get_thread_num())] = 1;
#pragma omp barrier
    if (omp_get_thread_num() == 0)
      for (int w : written) sum += w;
    if (race) shared += 1;  // the deliberate race
  }
  std::printf("threads=%d sum=%d shared=%d\n", omp_get_max_threads(), sum, shared);
  return sum == omp_get_max_threads() ? 0 : 1;
}
