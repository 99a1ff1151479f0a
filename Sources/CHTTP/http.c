#include "CHTTP.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct distill_http {
    CURL *curl;
};

typedef struct {
    char *data;
    size_t length, capacity, limit;
    int over_limit;
} buffer;

static int buffer_append(buffer *b, const char *bytes, size_t count) {
    if (count > b->limit - b->length) {
        b->over_limit = 1;
        return 0;
    }
    if (b->length + count + 1 > b->capacity) {
        size_t capacity = b->capacity ? b->capacity : 4096;
        while (capacity < b->length + count + 1) capacity *= 2;
        /* Never more than the limit allows (doubling past it would hold twice the memory). */
        if (capacity > b->limit + 1) capacity = b->limit + 1;
        char *grown = realloc(b->data, capacity);
        if (!grown) return 0;
        b->data = grown;
        b->capacity = capacity;
    }
    memcpy(b->data + b->length, bytes, count);
    b->length += count;
    b->data[b->length] = 0;
    return 1;
}

static size_t on_body(char *bytes, size_t size, size_t count, void *user) {
    return buffer_append(user, bytes, size * count) ? size * count : 0;
}

/* Keeps the header lines of the last answer only (a "100 Continue" comes before the real one). */
static size_t on_header(char *bytes, size_t size, size_t count, void *user) {
    buffer *b = user;
    size_t n = size * count;
    if (n >= 5 && memcmp(bytes, "HTTP/", 5) == 0) b->length = 0;
    return buffer_append(b, bytes, n) ? n : 0;
}

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static void global_init(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

distill_http *distill_http_create(void) {
    pthread_once(&global_once, global_init);
    distill_http *handle = calloc(1, sizeof *handle);
    if (!handle) return NULL;
    handle->curl = curl_easy_init();
    if (!handle->curl) {
        free(handle);
        return NULL;
    }
    return handle;
}

void distill_http_free(distill_http *handle) {
    if (!handle) return;
    curl_easy_cleanup(handle->curl);
    free(handle);
}

static enum distill_http_failure classify(CURLcode code) {
    switch (code) {
    case CURLE_OK: return DISTILL_HTTP_OK;
    case CURLE_COULDNT_RESOLVE_HOST: case CURLE_COULDNT_CONNECT: case CURLE_OPERATION_TIMEDOUT:
    case CURLE_GOT_NOTHING: case CURLE_SEND_ERROR: case CURLE_RECV_ERROR: case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2: case CURLE_HTTP2_STREAM:
    /* A handshake cut short (a reset mid-handshake); a refused certificate is
       CURLE_PEER_FAILED_VERIFICATION. */
    case CURLE_SSL_CONNECT_ERROR:
        return DISTILL_HTTP_TRANSIENT;
    case CURLE_PEER_FAILED_VERIFICATION: case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_ISSUER_ERROR: case CURLE_SSL_PINNEDPUBKEYNOTMATCH: case CURLE_SSL_INVALIDCERTSTATUS:
        return DISTILL_HTTP_CERTIFICATE;
    case CURLE_SSL_CACERT_BADFILE:
        return DISTILL_HTTP_CA_FILE;
    case CURLE_FILESIZE_EXCEEDED:
        return DISTILL_HTTP_TOO_LARGE;
    default:
        return DISTILL_HTTP_OTHER;
    }
}

int distill_http_exchange(distill_http *handle, const char *url, const char *const *headers, size_t header_count,
                          const void *body, size_t body_length, long timeout_ms, const char *ca_file,
                          size_t body_limit, distill_http_response *response) {
    memset(response, 0, sizeof *response);
    CURL *curl = handle->curl;
    /* Options go back to their defaults; live connections and caches are kept. */
    curl_easy_reset(curl);
    buffer content = {0}, lines = {0};
    content.limit = body_limit;
    lines.limit = 64 * 1024;
    char error[CURL_ERROR_SIZE] = {0};
    struct curl_slist *list = NULL;
    for (size_t i = 0; i < header_count; i++) {
        struct curl_slist *appended = curl_slist_append(list, headers[i]);
        if (!appended) {
            curl_slist_free_all(list);
            response->failure = DISTILL_HTTP_OTHER;
            strcpy(response->message, "out of memory");
            return response->failure;
        }
        list = appended;
    }
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &content);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &lines);
    curl_easy_setopt(curl, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)body_limit);
    if (ca_file) curl_easy_setopt(curl, CURLOPT_CAINFO, ca_file);
    if (body) {
        curl_easy_setopt(curl, CURLOPT_POST, 1L);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_length);
    } else {
        curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
    }
    CURLcode code = curl_easy_perform(curl);
    curl_slist_free_all(list);
    /* The error buffer must not outlive this call. */
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &response->status);
    response->failure = content.over_limit ? DISTILL_HTTP_TOO_LARGE : classify(code);
    if (response->failure != DISTILL_HTTP_OK) {
        const char *words = error[0] ? error : curl_easy_strerror(code);
        strncpy(response->message, words, sizeof response->message - 1);
        size_t n = strlen(response->message);
        while (n > 0 && (response->message[n - 1] == '\n' || response->message[n - 1] == '\r')) response->message[--n] = 0;
        free(content.data);
        free(lines.data);
        return response->failure;
    }
    response->body = content.data;
    response->body_length = content.length;
    response->headers = lines.data;
    response->headers_length = lines.length;
    return DISTILL_HTTP_OK;
}

void distill_http_response_free(distill_http_response *response) {
    free(response->body);
    free(response->headers);
    response->body = NULL;
    response->headers = NULL;
}
