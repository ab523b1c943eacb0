/* libFuzzer target for what Portico reads of a policy service's answer (proxy/authgrpc.c
 * pt_authgrpc_read, proxy/ratelimit.c pt_ratelimit_read): the input's first byte picks the
 * service (even: a gRPC AuthService's CheckResponse, odd: a RateLimitResponse), the rest is the
 * message, framed as a gRPC answer with grpc-status 0 in a call whose memory is partly used, as
 * a real answer's is. Checks: reading never fails other than by -1, never writes past the call's
 * memory (ASan), and everything it takes is a header that may be written (pt_policy_header_ok):
 * the denial's or the 429's headers, and every edit of an allowing answer, whose op is one of
 * the four. Any violation aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/authgrpc.h"
#include "proxy/policy.h"
#include "fuzz.h"

static void check_headers(const struct pt_header *h, size_t n)
{
    for (size_t i = 0; i < n; i++)
        CHECK(pt_policy_header_ok(h[i].name, h[i].value));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct pt_call call; /* zeroed once; reset for every input below */
    static struct pt_authgrpc_answer aa;
    static struct pt_ratelimit_answer ra;
    size_t len;

    if (size < 1 || size - 1 > PT_CALL_MAX_ANSWER / 2)
        return 0;
    len = size - 1;
    if (call.mem == NULL && (call.mem = malloc(PT_CALL_MAX_ANSWER)) == NULL)
        return 0;
    call.status = 200;
    call.nheaders = call.nedits = 0;
    /* the body: the 5-byte frame and the message, then grpc-status 0 in the trailers */
    call.mem[0] = 0;
    call.mem[1] = (char)(len >> 24);
    call.mem[2] = (char)(len >> 16);
    call.mem[3] = (char)(len >> 8);
    call.mem[4] = (char)len;
    memcpy(call.mem + 5, data + 1, len);
    call.body = pt_str_make(call.mem, len + 5);
    memcpy(call.mem + 5 + len, "grpc-status0", 12);
    call.trailers[0] = (struct pt_header){ pt_str_make(call.mem + 5 + len, 11), pt_str_make(call.mem + 16 + len, 1) };
    call.ntrailers = 1;
    call.used = (uint32_t)(len + 17);
    if (data[0] % 2 == 0) {
        if (pt_authgrpc_read(&call, &aa) == 0) {
            if (!aa.ok) {
                CHECK(aa.status >= 200 && aa.status <= 599);
                check_headers(aa.headers, aa.nheaders);
            }
        }
    } else if (pt_ratelimit_read(&call, &ra) == 0 && ra.over) {
        check_headers(ra.headers, ra.nheaders);
    }
    CHECK(call.used <= PT_CALL_MAX_ANSWER);
    for (uint32_t i = 0; i < call.nedits; i++) {
        CHECK(call.edits[i].op <= PT_EDIT_RESP_ADD);
        CHECK(pt_policy_header_ok(call.edits[i].name, call.edits[i].op == PT_EDIT_REMOVE ? PT_STR_LIT("")
                                                                                        : call.edits[i].value));
    }
    return 0;
}
