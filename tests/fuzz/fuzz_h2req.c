// fuzz-sources: src/http/h2req.c src/http/h1.c src/core/common.c
/* libFuzzer target for src/http/h2req.c. The input is a list of fields, each "name\0value\0"
 * (the first byte chooses the storage's starting size). The storage is grown and moved as a
 * caller does on PT_TOOBIG, the old one poisoned. Checks: a head that pt_h2req_finish takes has
 * a method of upper-case letters, a target without control bytes, space or '#', origin-form or
 * "*" (or none for CONNECT), path + '?' + query == target, at most one cookie field, every slice
 * inside the storage, and every regular field a lower-case token with a value HTTP/1.1 can
 * carry (no control byte, no surrounding whitespace, no connection-specific name). Any
 * violation aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/h2req.h"
#include "fuzz.h"

static bool inside(struct pt_str s, const char *store, size_t cap)
{
    return s.len == 0 || (s.ptr >= store && s.ptr + s.len <= store + cap);
}

static void check_field(const struct pt_header *h, const char *store, size_t cap)
{
    CHECK(inside(h->name, store, cap) && inside(h->value, store, cap));
    CHECK(h->name.len > 0);
    for (size_t i = 0; i < h->name.len; i++) {
        char c = h->name.ptr[i];
        CHECK(c > 0x20 && c < 0x7f && !(c >= 'A' && c <= 'Z') && c != ':');
    }
    for (size_t i = 0; i < h->value.len; i++) {
        unsigned char c = (unsigned char)h->value.ptr[i];
        CHECK(c >= 0x20 || c == '\t');
        CHECK(c != 0x7f);
    }
    if (h->value.len) {
        CHECK(h->value.ptr[0] != ' ' && h->value.ptr[0] != '\t');
        CHECK(h->value.ptr[h->value.len - 1] != ' ' && h->value.ptr[h->value.len - 1] != '\t');
    }
    CHECK(!pt_str_eq(h->name, PT_STR_LIT("connection")) && !pt_str_eq(h->name, PT_STR_LIT("upgrade")) &&
          !pt_str_eq(h->name, PT_STR_LIT("transfer-encoding")));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pt_header hdrs[16];
    struct pt_h2req r = { .hdrs = hdrs, .max_hdrs = 16 };
    struct pt_h1_request req;
    size_t cap, i = 1;
    char *store;
    int rc = 0;

    if (size < 1)
        return 0;
    cap = 1 + data[0];
    store = malloc(cap);
    while (i < size && rc == 0) {
        const uint8_t *n = data + i, *z = memchr(n, 0, size - i), *v, *z2;
        if (z == NULL)
            break;
        v = z + 1;
        z2 = v < data + size ? memchr(v, 0, (size_t)(data + size - v)) : NULL;
        if (z2 == NULL)
            break;
        i = (size_t)(z2 + 1 - data);
        for (;;) {
            rc = pt_h2req_add(&r, store, cap, pt_str_make((const char *)n, (size_t)(z - n)),
                              pt_str_make((const char *)v, (size_t)(z2 - v)));
            if (rc != PT_TOOBIG || r.nhdrs >= r.max_hdrs || cap > (1u << 20))
                break;
            char *bigger = malloc(cap * 2);
            memcpy(bigger, store, r.used);
            memset(store, 0xee, cap);
            free(store);
            store = bigger;
            cap *= 2;
        }
        CHECK(r.used <= cap);
    }
    if (rc == 0) {
        rc = pt_h2req_finish(&r, store, cap, &req);
        if (rc == PT_TOOBIG) {
            char *bigger = malloc(cap * 2 + 64);
            memcpy(bigger, store, r.used);
            free(store);
            store = bigger;
            cap = cap * 2 + 64;
            rc = pt_h2req_finish(&r, store, cap, &req);
        }
        CHECK(rc == 0 || rc == PT_BADMSG);
    }
    if (rc == 0) {
        size_t cookies = 0;
        CHECK(req.method.len > 0 && inside(req.method, store, cap));
        for (size_t k = 0; k < req.method.len; k++)
            CHECK((req.method.ptr[k] >= 'A' && req.method.ptr[k] <= 'Z') || req.method.ptr[k] == '-' ||
                  req.method.ptr[k] == '_');
        CHECK(inside(req.target, store, cap) && inside(req.authority, store, cap));
        for (size_t k = 0; k < req.target.len; k++) {
            unsigned char c = (unsigned char)req.target.ptr[k];
            CHECK(c > 0x20 && c < 0x7f && c != '#');
        }
        if (req.method_id != PT_H1_METHOD_CONNECT) {
            CHECK(req.target.len > 0 && (req.target.ptr[0] == '/' || pt_str_eq(req.target, PT_STR_LIT("*"))));
            CHECK(req.path.ptr == req.target.ptr);
            CHECK(req.path.len + (req.query.ptr ? 1 + req.query.len : 0) == req.target.len);
        }
        CHECK(req.nheaders <= 16);
        for (size_t k = 0; k < req.nheaders; k++) {
            check_field(&req.headers[k], store, cap);
            cookies += pt_str_eq(req.headers[k].name, PT_STR_LIT("cookie"));
        }
        CHECK(cookies <= 1);
        CHECK(req.content_length >= -1);
    }
    free(store);
    return 0;
}
