/* Session-ticket keys for every server context of the process: a ring of three random keys
 * (AES-256-CBC + HMAC-SHA256, as OpenSSL's own tickets). The current key seals new tickets;
 * the two before it still open old ones, which are then renewed. Keys rotate every hour, lazily
 * (the first ticket sealed after the hour rotates, as many times as hours went by), or when
 * pt_tls_ticket_rotate() is called. Sharing one ring between all contexts and workers means a
 * client resumes on any worker and after a configuration reload; the ring is the only mutable
 * TLS state the workers share, behind a read-write lock that handshakes take for a copy.
 * context.c installs the callback on each server context. Keys never leave the process. */
#include "tls/tls.h"

#include "core/loop.h"

#include <pthread.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define PT_TLS_TICKET_KEYS 3
#define PT_TLS_TICKET_ROTATE_MS (3600u * 1000u)

struct ticket_key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
};

static struct {
    pthread_rwlock_t lock;
    struct ticket_key keys[PT_TLS_TICKET_KEYS]; /* [0] current, then older */
    int nkeys;                                  /* keys that can open tickets (0 before init) */
    uint64_t rotated_ms;                        /* monotonic time of the last rotation */
    uint64_t interval_ms;                       /* 0: PT_TLS_TICKET_ROTATE_MS */
} ring = { .lock = PTHREAD_RWLOCK_INITIALIZER };

/* rotate_locked: pushes a fresh key in front (write lock held). */
static void rotate_locked(uint64_t now)
{
    struct ticket_key k;

    if (RAND_bytes((unsigned char *)&k, sizeof(k)) != 1)
        return; /* keep the old keys rather than seal with weak ones */
    OPENSSL_cleanse(&ring.keys[PT_TLS_TICKET_KEYS - 1], sizeof(ring.keys[0]));
    memmove(&ring.keys[1], &ring.keys[0], sizeof(ring.keys[0]) * (PT_TLS_TICKET_KEYS - 1));
    ring.keys[0] = k;
    OPENSSL_cleanse(&k, sizeof(k));
    if (ring.nkeys < PT_TLS_TICKET_KEYS)
        ring.nkeys++;
    ring.rotated_ms = now;
}

void pt_tls_ticket_rotate(void)
{
    pthread_rwlock_wrlock(&ring.lock);
    rotate_locked(pt_now_ms());
    pthread_rwlock_unlock(&ring.lock);
}

void pt_tls__ticket_set_interval(uint64_t ms)
{
    pthread_rwlock_wrlock(&ring.lock);
    ring.interval_ms = ms;
    pthread_rwlock_unlock(&ring.lock);
}

/* rotate_if_due: the first key, or the hourly rotations that are due (at most a whole ring). */
static void rotate_if_due(void)
{
    uint64_t now = pt_now_ms();

    pthread_rwlock_rdlock(&ring.lock);
    uint64_t every = ring.interval_ms ? ring.interval_ms : PT_TLS_TICKET_ROTATE_MS;
    bool due = ring.nkeys == 0 || now - ring.rotated_ms >= every;
    pthread_rwlock_unlock(&ring.lock);
    if (!due)
        return;
    pthread_rwlock_wrlock(&ring.lock);
    if (ring.nkeys == 0) {
        rotate_locked(now);
    } else { /* re-checked: another thread may have rotated meanwhile */
        uint64_t periods = (now - ring.rotated_ms) / every;
        for (uint64_t i = 0; i < periods && i < PT_TLS_TICKET_KEYS; i++)
            rotate_locked(now);
    }
    pthread_rwlock_unlock(&ring.lock);
}

/* find_key: copies the key named <name> into <out>; its index, or -1. */
static int find_key(const unsigned char name[16], struct ticket_key *out)
{
    int at = -1;

    pthread_rwlock_rdlock(&ring.lock);
    for (int i = 0; i < ring.nkeys && at < 0; i++) {
        if (CRYPTO_memcmp(ring.keys[i].name, name, 16) == 0) {
            *out = ring.keys[i];
            at = i;
        }
    }
    pthread_rwlock_unlock(&ring.lock);
    return at;
}

static int set_hmac(EVP_MAC_CTX *hctx, unsigned char *key)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key, 32),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    return EVP_MAC_CTX_set_params(hctx, params);
}

/* seal: a new ticket with the current key. 1, or -1 on failure (no ticket is sent). */
static int seal(unsigned char *key_name, unsigned char *iv, EVP_CIPHER_CTX *cctx,
                EVP_MAC_CTX *hctx)
{
    struct ticket_key k;
    int ok;

    rotate_if_due();
    pthread_rwlock_rdlock(&ring.lock);
    k = ring.keys[0];
    pthread_rwlock_unlock(&ring.lock);
    ok = RAND_bytes(iv, 16) == 1 &&
         EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) == 1 &&
         set_hmac(hctx, k.hmac) == 1;
    memcpy(key_name, k.name, 16);
    OPENSSL_cleanse(&k, sizeof(k));
    return ok ? 1 : -1;
}

/* open_ticket: 1 (current key), 2 (older key: renew the ticket), 0 (unknown key: full
 * handshake) or -1. */
static int open_ticket(const unsigned char *key_name, unsigned char *iv, EVP_CIPHER_CTX *cctx,
                       EVP_MAC_CTX *hctx)
{
    struct ticket_key k;
    int at, ok;

    rotate_if_due(); /* a key past its time opens nothing, even if no ticket was sealed since */
    if ((at = find_key(key_name, &k)) < 0)
        return 0;
    ok = EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) == 1 &&
         set_hmac(hctx, k.hmac) == 1;
    OPENSSL_cleanse(&k, sizeof(k));
    if (!ok)
        return -1;
    return at == 0 ? 1 : 2;
}

static int ticket_cb(SSL *ssl, unsigned char key_name[16], unsigned char *iv,
                     EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    return enc ? seal(key_name, iv, cctx, hctx) : open_ticket(key_name, iv, cctx, hctx);
}

void pt_tls__ticket_setup(SSL_CTX *ctx)
{
    rotate_if_due(); /* the first key, made on the control thread */
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb);
}
