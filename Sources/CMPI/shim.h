#ifndef DISTILL_MPI_SHIM_H
#define DISTILL_MPI_SHIM_H

/* The few MPI calls Distill's data-parallel training needs, as plain C functions.
   Open MPI defines MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, ... as macros over global objects,
   which Swift does not import; these inline wrappers name them for it. Every call works on
   MPI_COMM_WORLD. Errors abort the job (MPI's default handler), which is what a
   data-parallel run must do when a rank is lost: mpirun then stops every process. */
#include <mpi.h>
#include <stdlib.h>

/* Initialises MPI (main thread only makes MPI calls: MPI_THREAD_FUNNELED). Returns 0 on success. */
static inline int distill_mpi_init(void) {
    int provided = 0;
    return MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) == MPI_SUCCESS ? 0 : 1;
}
static inline void distill_mpi_finalize(void) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
}
static inline int distill_mpi_rank(void) { int r = 0; MPI_Comm_rank(MPI_COMM_WORLD, &r); return r; }
static inline int distill_mpi_size(void) { int s = 1; MPI_Comm_size(MPI_COMM_WORLD, &s); return s; }
static inline void distill_mpi_barrier(void) { MPI_Barrier(MPI_COMM_WORLD); }
static inline void distill_mpi_abort(int code) { MPI_Abort(MPI_COMM_WORLD, code); }

/* In-place sums over every rank. */
static inline void distill_mpi_allreduce_float(float *values, long count) {
    MPI_Allreduce(MPI_IN_PLACE, values, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
}
static inline void distill_mpi_allreduce_double(double *values, long count) {
    MPI_Allreduce(MPI_IN_PLACE, values, (int)count, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}
/* Non-blocking in-place sum: returns the request (owned by the caller, released by
   distill_mpi_wait), or NULL when it could not be allocated (the caller then sums blocking). */
static inline void *distill_mpi_iallreduce_float(float *values, long count) {
    MPI_Request *request = (MPI_Request *)malloc(sizeof(MPI_Request));
    if (!request) return NULL;
    MPI_Iallreduce(MPI_IN_PLACE, values, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, request);
    return request;
}
/* 1 when the request is complete (MPI moves it on inside this call). */
static inline int distill_mpi_test(void *request) {
    int done = 0;
    MPI_Test((MPI_Request *)request, &done, MPI_STATUS_IGNORE);
    return done;
}
/* Waits for the request (a no-op once complete) and releases it. */
static inline void distill_mpi_wait(void *request) {
    MPI_Wait((MPI_Request *)request, MPI_STATUS_IGNORE);
    free(request);
}
/* Every rank's `count` bytes, in rank order, into `result` (size × count bytes). */
static inline void distill_mpi_allgather_bytes(const void *bytes, long count, void *result) {
    MPI_Allgather(bytes, (int)count, MPI_BYTE, result, (int)count, MPI_BYTE, MPI_COMM_WORLD);
}
static inline void distill_mpi_broadcast_bytes(void *bytes, long count, int root) {
    MPI_Bcast(bytes, (int)count, MPI_BYTE, root, MPI_COMM_WORLD);
}
#endif
