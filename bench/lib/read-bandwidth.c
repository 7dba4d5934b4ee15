/*
 * Single-core memory read bandwidth: one thread sums a buffer far larger than the caches (1 GiB by
 * default) with 256-bit loads into four independent accumulators, so the loads, not the adds, limit
 * it, as they limit a decode step that reads every weight once. Prints one JSON line: the median and
 * the best of the passes, in GB/s (1e9 bytes). Built by bench/lib/bandwidth.ts with cc -O2 -mavx2.
 *
 *   read-bandwidth [MiB=1024] [passes=7]
 */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  size_t mib = argc > 1 ? strtoul(argv[1], 0, 10) : 1024;
  int passes = argc > 2 ? atoi(argv[2]) : 7;
  if (mib < 64 || passes < 1 || passes > 100) {
    fprintf(stderr, "read-bandwidth: MiB must be >= 64 and passes 1..100\n");
    return 2;
  }
  size_t n = mib * 1024 * 1024 / sizeof(float);
  float *a = aligned_alloc(64, n * sizeof(float));
  if (!a) {
    fprintf(stderr, "read-bandwidth: cannot allocate %zu MiB\n", mib);
    return 1;
  }
  for (size_t i = 0; i < n; i++) a[i] = (float)(i & 7); /* every page present before timing */
  double gbps[100];
  float keep = 0;
  for (int p = 0; p < passes; p++) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    double t0 = now();
    for (size_t i = 0; i < n; i += 32) {
      s0 = _mm256_add_ps(s0, _mm256_load_ps(a + i));
      s1 = _mm256_add_ps(s1, _mm256_load_ps(a + i + 8));
      s2 = _mm256_add_ps(s2, _mm256_load_ps(a + i + 16));
      s3 = _mm256_add_ps(s3, _mm256_load_ps(a + i + 24));
    }
    double t = now() - t0;
    float out[8];
    _mm256_storeu_ps(out, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (int j = 0; j < 8; j++) keep += out[j]; /* the sums are used, so the loop stays */
    gbps[p] = n * sizeof(float) / t / 1e9;
  }
  qsort(gbps, passes, sizeof(double), cmp);
  printf("{\"mib\":%zu,\"passes\":%d,\"median_gbps\":%.3f,\"best_gbps\":%.3f,\"checksum\":%.1f}\n", mib, passes, gbps[(passes - 1) / 2], gbps[passes - 1], keep);
  free(a);
  return 0;
}
