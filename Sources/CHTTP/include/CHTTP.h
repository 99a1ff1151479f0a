#ifndef DISTILL_CHTTP_H
#define DISTILL_CHTTP_H

#include <stddef.h>

/* One HTTP(S) exchange at a time through libcurl's easy interface: the served teacher's
   transport. A handle keeps its connections alive between exchanges; one thread uses it at a
   time. libcurl's options are set here, in C, because curl_easy_setopt is variadic (Swift
   cannot call it). Redirects are never followed, only http and https are spoken, and signals
   are not used (the handles serve several threads). */
typedef struct distill_http distill_http;

distill_http *distill_http_create(void);
void distill_http_free(distill_http *handle);

/* What went wrong, for the caller's retry decision. */
enum distill_http_failure {
    DISTILL_HTTP_OK = 0,
    /* A timeout, a refused or reset connection, a truncated answer: worth retrying. */
    DISTILL_HTTP_TRANSIENT = 1,
    /* The server's certificate was refused (unknown issuer, wrong host name, expired): not
       retried. A handshake that fails otherwise (cut short) is transient. */
    DISTILL_HTTP_CERTIFICATE = 2,
    /* The CA file could not be read or holds no certificate. */
    DISTILL_HTTP_CA_FILE = 3,
    /* The body was larger than the limit: reading stopped there. */
    DISTILL_HTTP_TOO_LARGE = 4,
    /* Anything else (a malformed address, no memory): not retried. */
    DISTILL_HTTP_OTHER = 5,
};

typedef struct {
    enum distill_http_failure failure;
    long status;                 /* the HTTP status, when an answer came */
    char *body;                  /* the answer's body (free with distill_http_response_free) */
    size_t body_length;
    char *headers;               /* the last answer's header lines, as received */
    size_t headers_length;
    char message[512];           /* libcurl's words for a failure */
} distill_http_response;

/* GET `url` (`body` NULL) or POST `body_length` bytes of `body` to it, with `header_count`
   extra header lines ("Name: value"). `ca_file` NULL: the system's certificate store;
   otherwise the only certificates trusted. Stops reading (DISTILL_HTTP_TOO_LARGE) as soon as
   the body would pass `body_limit` bytes, or at once when Content-Length says it will.
   `timeout_ms` bounds the whole exchange. Returns response->failure. */
int distill_http_exchange(distill_http *handle, const char *url, const char *const *headers, size_t header_count,
                          const void *body, size_t body_length, long timeout_ms, const char *ca_file,
                          size_t body_limit, distill_http_response *response);

void distill_http_response_free(distill_http_response *response);

#endif
