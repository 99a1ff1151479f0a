/* How to split a 1024³ sgemm over two threads (issue 17: sgemm at 2 threads ≥ PyTorch's).
   Times oneDNN's single-threaded dnnl_sgemm on the whole product, oneDNN's own OpenMP
   threading at 2 threads, and five splits over two pthreads, each a single-threaded sgemm
   per part as Distill's MatrixKernels runs them: row halves (what Distill does today),
   column halves, k halves summed afterwards, 2-D (each thread two quadrants of its row
   half), and four row blocks of 256. The modes alternate round by round; it prints each
   mode's minimum and median over the rounds.

       clang -O2 bench/sgemm/sgemm_splits.c -o /tmp/sgemm_splits -ldnnl -lgomp -lpthread
       /tmp/sgemm_splits [rounds, default 40, at most 60]

   Only meaningful on a quiet machine: see docs/benchmarks.md. */
#include <dnnl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void omp_set_num_threads(int);

#define N 1024
#define MODES 7
static float *A, *B, *C, *C2;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

typedef struct { int mode, part; } job;

static void *work(void *argument) {
    job *j = argument;
    omp_set_num_threads(1);
    int h = N / 2;
    switch (j->mode) {
    case 0: dnnl_sgemm('N', 'N', h, N, N, 1, A + j->part * h * N, N, B, N, 0, C + j->part * h * N, N); break;
    case 1: dnnl_sgemm('N', 'N', N, h, N, 1, A, N, B + j->part * h, N, 0, C + j->part * h, N); break;
    case 2: dnnl_sgemm('N', 'N', N, N, h, 1, A + j->part * h, N, B + j->part * h * N, N, 0, j->part ? C2 : C, N); break;
    case 3:
        for (int q = 0; q < 2; q++) dnnl_sgemm('N', 'N', h, h, N, 1, A + j->part * h * N, N, B + q * h, N, 0, C + j->part * h * N + q * h, N);
        break;
    case 4:
        for (int q = 0; q < 2; q++) {
            int row = (j->part * 2 + q) * 256;
            dnnl_sgemm('N', 'N', 256, N, N, 1, A + row * N, N, B, N, 0, C + row * N, N);
        }
        break;
    }
    return 0;
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    const char *names[MODES] = {"rows", "columns", "k halves", "2-D", "4 row blocks", "1 thread", "oneDNN OpenMP 2"};
    int rounds = argc > 1 ? atoi(argv[1]) : 40;
    if (rounds < 1 || rounds > 60) rounds = 40;
    A = aligned_alloc(64, N * N * 4); B = aligned_alloc(64, N * N * 4);
    C = aligned_alloc(64, N * N * 4); C2 = aligned_alloc(64, N * N * 4);
    srand(0);
    for (int i = 0; i < N * N; i++) {
        A[i] = rand() / (float)RAND_MAX - 0.5f;
        B[i] = rand() / (float)RAND_MAX - 0.5f;
    }
    static double times[MODES][60];
    for (int round = 0; round < rounds; round++) {
        for (int mode = 0; mode < MODES; mode++) {
            double start = now();
            if (mode == 5 || mode == 6) {
                omp_set_num_threads(mode == 5 ? 1 : 2);
                dnnl_sgemm('N', 'N', N, N, N, 1, A, N, B, N, 0, C, N);
                omp_set_num_threads(1);
            } else {
                pthread_t thread;
                job first = {mode, 0}, second = {mode, 1};
                pthread_create(&thread, 0, work, &second);
                work(&first);
                pthread_join(thread, 0);
                if (mode == 2) for (int i = 0; i < N * N; i++) C[i] += C2[i];
            }
            times[mode][round] = now() - start;
        }
    }
    for (int mode = 0; mode < MODES; mode++) {
        qsort(times[mode], rounds, sizeof(double), compare);
        printf("%-16s min %6.2f ms   median %6.2f ms\n", names[mode], times[mode][0] * 1e3, times[mode][rounds / 2] * 1e3);
    }
    return 0;
}
