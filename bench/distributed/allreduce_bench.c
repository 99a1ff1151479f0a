/* MPI_Allreduce (MPI_SUM of floats) time against message size, for the α–β fit in
 * bench/distributed/scaling.py and model.py. scaling.py builds and runs it:
 *
 *     mpicc -O2 -o /tmp/allreduce_bench bench/distributed/allreduce_bench.c
 *     mpirun --allow-run-as-root --oversubscribe --bind-to none --mca btl self,tcp -np 2 \
 *         /tmp/allreduce_bench [max_bytes] [seconds_per_size]
 *
 * Sizes run from 4 B to max_bytes (default 64 MiB) by factors of 4. For each size: a
 * warm-up of 3 calls, then rounds of back-to-back calls (calls a round doubled from 1 until a
 * round lasts a tenth of seconds_per_size, default 0.5 s; rounds until that budget is spent,
 * at least 3, at most 64); a round's
 * time per call is the slowest rank's (MPI_MAX over ranks), and the size's result is the
 * median and the minimum over its rounds. Rank 0 prints one JSON line per size:
 *     {"bytes": 4096, "calls": 4000, "median_s": 2.1e-05, "min_s": 1.9e-05}
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    long max_bytes = argc > 1 ? atol(argv[1]) : 64L << 20;
    double seconds_per_size = argc > 2 ? atof(argv[2]) : 0.5;
    if (max_bytes < 4 || seconds_per_size <= 0) {
        if (rank == 0) fprintf(stderr, "Error: usage: allreduce_bench [max_bytes >= 4] [seconds_per_size > 0]\n");
        MPI_Finalize();
        return 1;
    }
    long max_count = max_bytes / 4;
    float *send = malloc(max_count * sizeof(float)), *receive = malloc(max_count * sizeof(float));
    if (!send || !receive) {
        fprintf(stderr, "Error: rank %d cannot allocate %ld bytes\n", rank, 2 * max_bytes);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    for (long i = 0; i < max_count; i++) send[i] = (float)(i % 1000) * 1e-3f + (float)rank;
    enum { MAX_ROUNDS = 64 };
    double times[MAX_ROUNDS];
    for (long count = 1; count <= max_count; count *= 4) {
        for (int i = 0; i < 3; i++) MPI_Allreduce(send, receive, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        /* Calls per round: doubled from 1 until a round (the slowest rank's) lasts a tenth of the budget. */
        long calls = 1;
        for (;;) {
            MPI_Barrier(MPI_COMM_WORLD);
            double start = MPI_Wtime();
            for (long i = 0; i < calls; i++)
                MPI_Allreduce(send, receive, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            double elapsed = MPI_Wtime() - start;
            MPI_Allreduce(MPI_IN_PLACE, &elapsed, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
            if (elapsed >= seconds_per_size / 10 || calls >= 1L << 20) break;
            calls *= 2;
        }
        int rounds = 0;
        double budget_start = MPI_Wtime();
        for (;;) {
            MPI_Barrier(MPI_COMM_WORLD);
            double start = MPI_Wtime();
            for (long i = 0; i < calls; i++)
                MPI_Allreduce(send, receive, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            double per_call = (MPI_Wtime() - start) / calls;
            MPI_Allreduce(MPI_IN_PLACE, &per_call, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
            times[rounds++] = per_call;
            /* Every rank decides from rank 0's clock, so all leave the loop together. */
            int done = rounds >= MAX_ROUNDS || (rounds >= 3 && MPI_Wtime() - budget_start >= seconds_per_size);
            MPI_Bcast(&done, 1, MPI_INT, 0, MPI_COMM_WORLD);
            if (done) break;
        }
        qsort(times, rounds, sizeof(double), compare);
        double median = rounds % 2 ? times[rounds / 2] : (times[rounds / 2 - 1] + times[rounds / 2]) / 2;
        if (rank == 0) {
            printf("{\"bytes\": %ld, \"ranks\": %d, \"calls\": %ld, \"rounds\": %d, \"median_s\": %.9g, \"min_s\": %.9g}\n",
                   count * 4, size, calls, rounds, median, times[0]);
            fflush(stdout);
        }
    }
    free(send);
    free(receive);
    MPI_Finalize();
    return 0;
}
