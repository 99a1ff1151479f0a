/* What the oneDNN callers (convolution.c, gemm_bf16.c) share: one CPU engine, each
   thread's stream and buffers, and the table their made primitives are kept in. Each thread keeps its buffers between calls, grown to the
   largest asked for: allocated per call, their pages were faulted in and zeroed by the
   kernel again and again (a fifth of a resnet20 training step on one thread). They are freed
   when the thread ends. */
#include "kernels.h"

#if !defined(__APPLE__) && __has_include(<dnnl.h>)
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

/* FNV-1a over the key's bytes. */
static size_t bucket_of(const distill_dnnl_cache *cache, const void *key) {
    const unsigned char *bytes = key;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < cache->keySize; i++) h = (h ^ bytes[i]) * 1099511628211ull;
    return (size_t)(h % DISTILL_DNNL_CACHE_BUCKETS);
}

static const void *key_of(const distill_dnnl_cache *cache, const distill_dnnl_cached *e) {
    return (const char *)e + cache->keyOffset;
}

static distill_dnnl_cached *find_locked(distill_dnnl_cache *cache, const void *key, size_t bucket) {
    for (distill_dnnl_cached *e = cache->buckets[bucket]; e; e = e->next)
        if (memcmp(key_of(cache, e), key, cache->keySize) == 0) return e;
    return NULL;
}

distill_dnnl_cached *distill_dnnl_cache_find(distill_dnnl_cache *cache, const void *key) {
    size_t bucket = bucket_of(cache, key);
    pthread_mutex_lock(&cache->lock);
    distill_dnnl_cached *e = find_locked(cache, key, bucket);
    pthread_mutex_unlock(&cache->lock);
    return e;
}

distill_dnnl_cached *distill_dnnl_cache_keep(distill_dnnl_cache *cache, distill_dnnl_cached *made, int *kept) {
    const void *key = key_of(cache, made);
    size_t bucket = bucket_of(cache, key);
    *kept = 0;
    pthread_mutex_lock(&cache->lock);
    distill_dnnl_cached *e = find_locked(cache, key, bucket);
    if (!e) {
        e = made;
        if (cache->count < cache->capacity) {
            made->next = cache->buckets[bucket];
            cache->buckets[bucket] = made;
            cache->count++;
            *kept = 1;
        }
    }
    pthread_mutex_unlock(&cache->lock);
    return e;
}
#endif
