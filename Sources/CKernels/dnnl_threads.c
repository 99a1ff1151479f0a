/* What the oneDNN callers (convolution.c, gemm_bf16.c) share: one CPU engine, and each
   thread's stream and buffers. Each thread keeps its buffers between calls, grown to the
   largest asked for: allocated per call, their pages were faulted in and zeroed by the
   kernel again and again (a fifth of a resnet20 training step on one thread). They are freed
   when the thread ends. */
#include "kernels.h"

#if !defined(__APPLE__) && __has_include(<dnnl.h>)
#include <pthread.h>
#include <stdlib.h>

static dnnl_engine_t engine;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;

static void make_engine(void) {
    if (dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success) engine = NULL;
}

dnnl_engine_t distill_dnnl_engine(void) {
    pthread_once(&engine_once, make_engine);
    return engine;
}

typedef struct { void *pointer; size_t size; } buffer;
static __thread buffer buffers[DISTILL_BUFFER_COUNT];
static __thread dnnl_stream_t thread_stream;
static pthread_key_t buffers_key;
static pthread_once_t buffers_once = PTHREAD_ONCE_INIT;

static void free_buffers(void *unused) {
    (void)unused;
    if (thread_stream) {
        dnnl_stream_destroy(thread_stream);
        thread_stream = NULL;
    }
    for (int i = 0; i < DISTILL_BUFFER_COUNT; i++) {
        free(buffers[i].pointer);
        buffers[i] = (buffer){NULL, 0};
    }
}

static void make_buffers_key(void) { pthread_key_create(&buffers_key, free_buffers); }

static void register_thread(void) {
    pthread_once(&buffers_once, make_buffers_key);
    pthread_setspecific(buffers_key, buffers); /* any non-NULL value: the destructor runs */
}

void *distill_dnnl_thread_buffer(int slot, size_t size) {
    buffer *b = &buffers[slot];
    if (b->size >= size) return b->pointer;
    register_thread();
    free(b->pointer);
    *b = (buffer){NULL, 0};
    if (posix_memalign(&b->pointer, 64, size) != 0) return b->pointer = NULL;
    b->size = size;
    return b->pointer;
}

dnnl_stream_t distill_dnnl_thread_stream(void) {
    if (thread_stream) return thread_stream;
    dnnl_engine_t e = distill_dnnl_engine();
    if (!e) return NULL;
    register_thread();
    if (dnnl_stream_create(&thread_stream, e, dnnl_stream_default_flags) != dnnl_success) thread_stream = NULL;
    return thread_stream;
}
#endif
