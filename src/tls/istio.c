/* The Istio certificate directory (AMBASSADOR_ISTIO_SECRET_DIR): the istio-agent sidecar
 * writes key.pem, cert-chain.pem and root-cert.pem there, each file atomically (temp file +
 * rename) but one after the other, so between two renames the key may belong to the next
 * certificate. This file watches the directory with inotify, waits for a burst of writes to
 * settle (100 ms), and takes a pair only when the key and the whole chain parse and the key
 * matches the chain's first certificate; otherwise the previous pair stays in force (a
 * mismatched pair is never handed out) and the load is retried. A new good pair calls the
 * owner back so that it recompiles; the pair is then published as the Secret `istio-certs`
 * (pt_istio_inject_secret). Deleted files do not withdraw the last good pair: a workload keeps
 * talking to the mesh with it until a new one arrives. Emissary differs: it pairs files by
 * arrival time (within 5 s) without checking them, and drops the Secret when a file goes.
 * Runs on the control thread's loop; pt_istio_certs_get may be called from any thread. */
#include "tls/tls.h"

#include "core/log.h"
#include "core/loop.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <openssl/err.h>

#define PT_ISTIO_DEBOUNCE_MS 100
#define PT_ISTIO_MAX_BURST_MS 1000  /* a burst longer than this is loaded anyway */
#define PT_ISTIO_RETRY_MS 1000
#define PT_ISTIO_MAX_RETRIES 10
#define PT_ISTIO_REWATCH_MS 5000    /* polling for a directory that is missing */
#define PT_ISTIO_MAX_FILE (1 << 20)
#define PT_ISTIO_MASK (IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_MOVED_FROM | \
                       IN_DELETE_SELF | IN_MOVE_SELF)

enum load_result { LOAD_NEW, LOAD_SAME, LOAD_MISSING, LOAD_BAD };

static struct {
    pthread_mutex_t lock; /* guards pair, have and error */
    struct pt_istio_pair pair; /* the current good pair (its error field unused) */
    bool have;
    char error[256];

    bool started, watching;
    struct pt_loop *loop;
    struct pt_io io;
    struct pt_timer debounce, retry;
    uint64_t burst_start_ms; /* first event of the burst being debounced; 0 none */
    unsigned retries;
    char dir[PATH_MAX];
    void (*on_change)(void *);
    void *arg;
} ist = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void set_error(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    pthread_mutex_lock(&ist.lock);
    vsnprintf(ist.error, sizeof(ist.error), fmt, ap);
    pthread_mutex_unlock(&ist.lock);
    va_end(ap);
}

/* read_one: <dir>/<name> into a new NUL-terminated buffer. 1 read, 0 absent, -1 error. */
static int read_one(const char *name, char **out, size_t *len, char *err, size_t errlen)
{
    char path[PATH_MAX + 32];
    int fd;
    ssize_t n = 0, r;

    *out = NULL, *len = 0;
    snprintf(path, sizeof(path), "%s/%s", ist.dir, name);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errlen, "%s: %s", name, strerror(errno));
        return -1;
    }
    *out = pt_xmalloc(PT_ISTIO_MAX_FILE + 1);
    while (n <= PT_ISTIO_MAX_FILE && (r = read(fd, *out + n, PT_ISTIO_MAX_FILE + 1 - n)) != 0) {
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            break;
        n += r;
    }
    close(fd);
    if (r < 0 || n > PT_ISTIO_MAX_FILE) {
        snprintf(err, errlen, "%s: %s", name, r < 0 ? strerror(errno) : "larger than 1 MiB");
        free(*out);
        *out = NULL;
        return -1;
    }
    (*out)[n] = '\0';
    *len = (size_t)n;
    return 1;
}

/* check_pair: parses <p> fully and fills its expiry and serial; 0, or -1 with <err>. */
static int check_pair(struct pt_istio_pair *p, char *err, size_t errlen)
{
    EVP_PKEY *key = NULL;
    X509 *leaf = NULL, *root = NULL;
    STACK_OF(X509) *rest = NULL, *roots = NULL;
    char why[160];
    int rc = -1;

    if (pt_tls__parse_key(p->key_pem, p->key_len, &key, why, sizeof(why)) < 0)
        snprintf(err, errlen, "key.pem: %s", why);
    else if (pt_tls__parse_certs(p->chain_pem, p->chain_len, &leaf, &rest, why, sizeof(why)) < 0)
        snprintf(err, errlen, "cert-chain.pem: %s", why);
    else if (X509_check_private_key(leaf, key) != 1)
        snprintf(err, errlen, "key.pem does not match the first certificate of cert-chain.pem");
    else if (p->root_pem != NULL &&
             pt_tls__parse_certs(p->root_pem, p->root_len, &root, &roots, why, sizeof(why)) < 0)
        snprintf(err, errlen, "root-cert.pem: %s", why);
    else
        rc = 0;
    ERR_clear_error();
    if (rc == 0) {
        p->not_after = pt_tls_cert_not_after(leaf);
        pt_tls__serial_hex(leaf, p->serial, sizeof(p->serial));
    }
    EVP_PKEY_free(key);
    X509_free(leaf);
    X509_free(root);
    sk_X509_pop_free(rest, X509_free);
    sk_X509_pop_free(roots, X509_free);
    return rc;
}

static bool same_text(const char *a, size_t alen, const char *b, size_t blen)
{
    return (a == NULL) == (b == NULL) && alen == blen && (a == NULL || memcmp(a, b, alen) == 0);
}

/* adopt: makes <p> the current pair unless it is the same; LOAD_NEW or LOAD_SAME. */
static enum load_result adopt(struct pt_istio_pair *p)
{
    enum load_result r = LOAD_SAME;

    pthread_mutex_lock(&ist.lock);
    ist.error[0] = '\0';
    if (!ist.have || !same_text(p->key_pem, p->key_len, ist.pair.key_pem, ist.pair.key_len) ||
        !same_text(p->chain_pem, p->chain_len, ist.pair.chain_pem, ist.pair.chain_len) ||
        !same_text(p->root_pem, p->root_len, ist.pair.root_pem, ist.pair.root_len)) {
        p->generation = ist.pair.generation + 1;
        struct pt_istio_pair old = ist.pair;
        ist.pair = *p;
        *p = old;
        ist.have = true;
        r = LOAD_NEW;
    }
    pthread_mutex_unlock(&ist.lock);
    pt_istio_pair_free(p);
    return r;
}

/* try_load: reads and checks the directory's files. */
static enum load_result try_load(void)
{
    struct pt_istio_pair p = { 0 };
    char err[200] = "";
    int k, c, r;

    k = read_one("key.pem", &p.key_pem, &p.key_len, err, sizeof(err));
    c = k < 0 ? -1 : read_one("cert-chain.pem", &p.chain_pem, &p.chain_len, err, sizeof(err));
    r = c < 0 ? -1 : read_one("root-cert.pem", &p.root_pem, &p.root_len, err, sizeof(err));
    if (r < 0 || k == 0 || c == 0) {
        if (r >= 0) /* Istio has not written both yet: its next write wakes us */
            snprintf(err, sizeof(err), "waiting for %s", k == 0 ? "key.pem" : "cert-chain.pem");
        set_error("%s: %s", ist.dir, err);
        pt_istio_pair_free(&p);
        return r < 0 ? LOAD_BAD : LOAD_MISSING;
    }
    if (check_pair(&p, err, sizeof(err)) < 0) {
        set_error("%s: %s", ist.dir, err);
        pt_istio_pair_free(&p);
        return LOAD_BAD;
    }
    return adopt(&p);
}

/* reload: one attempt; a refusal is retried a few times, a new pair is announced. */
static void reload(void)
{
    enum load_result r = try_load();

    if (r == LOAD_BAD && ist.retries < PT_ISTIO_MAX_RETRIES) {
        ist.retries++;
        pt_timer_arm(ist.loop, &ist.retry, PT_ISTIO_RETRY_MS);
        return;
    }
    if (r == LOAD_BAD)
        pt_warn("istio certs: keeping the previous certificate: %s", ist.error);
    pt_timer_cancel(&ist.retry);
    if (r == LOAD_NEW) {
        pt_info("istio certs: loaded certificate serial %s from %s", ist.pair.serial, ist.dir);
        ist.on_change(ist.arg);
    }
}

/* watch_dir: adds the inotify watch; polls for the directory while it is missing. */
static bool watch_dir(void)
{
    if (inotify_add_watch(ist.io.fd, ist.dir, PT_ISTIO_MASK | IN_ONLYDIR) >= 0) {
        ist.watching = true;
        return true;
    }
    set_error("cannot watch %s: %s", ist.dir, strerror(errno));
    ist.watching = false;
    pt_timer_arm(ist.loop, &ist.retry, PT_ISTIO_REWATCH_MS);
    return false;
}

static void on_retry(struct pt_timer *t)
{
    if (!ist.watching) {
        if (watch_dir())
            reload();
        return;
    }
    reload();
}

static void on_debounce(struct pt_timer *t)
{
    ist.burst_start_ms = 0;
    ist.retries = 0;
    reload();
}

/* relevant: the files Istio writes, and kubelet's "..data" swap for a mounted Secret. */
static bool relevant(const struct inotify_event *ev)
{
    return ev->len == 0 || strcmp(ev->name, "key.pem") == 0 ||
           strcmp(ev->name, "cert-chain.pem") == 0 || strcmp(ev->name, "root-cert.pem") == 0 ||
           strncmp(ev->name, "..data", 6) == 0;
}

static void on_events(struct pt_io *io, uint32_t events)
{
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    bool any = false, lost = false;
    ssize_t n;

    while ((n = read(io->fd, buf, sizeof(buf))) > 0) {
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            lost |= (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF)) != 0;
            any |= relevant(ev);
            p += sizeof(*ev) + ev->len;
        }
    }
    if (lost && ist.watching) { /* the directory went away: poll until it is back */
        ist.watching = false;
        pt_timer_arm(ist.loop, &ist.retry, PT_ISTIO_REWATCH_MS);
        return;
    }
    if (!any || !ist.watching)
        return;
    uint64_t now = pt_loop_now_ms(ist.loop);
    if (ist.burst_start_ms == 0)
        ist.burst_start_ms = now;
    if (now - ist.burst_start_ms < PT_ISTIO_MAX_BURST_MS || !pt_timer_armed(&ist.debounce))
        pt_timer_arm(ist.loop, &ist.debounce, PT_ISTIO_DEBOUNCE_MS);
}

int pt_istio_certs_start(struct pt_loop *loop, const char *dir, void (*on_change)(void *),
                         void *arg)
{
    int fd;

    if (ist.started)
        return PT_INVAL;
    if ((fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) < 0) {
        pt_warn("istio certs: inotify: %s", strerror(errno));
        return PT_IO;
    }
    ist.loop = loop;
    ist.io = (struct pt_io){ .fd = fd, .cb = on_events };
    ist.debounce = (struct pt_timer){ .cb = on_debounce };
    ist.retry = (struct pt_timer){ .cb = on_retry };
    ist.on_change = on_change, ist.arg = arg;
    ist.retries = 0, ist.burst_start_ms = 0;
    snprintf(ist.dir, sizeof(ist.dir), "%s", dir);
    if (pt_loop_add(loop, &ist.io, EPOLLIN) < 0) {
        close(fd);
        return PT_IO;
    }
    ist.started = true;
    if (watch_dir() && try_load() == LOAD_BAD) {
        ist.retries = 1;
        pt_timer_arm(loop, &ist.retry, PT_ISTIO_RETRY_MS);
    }
    return 0;
}

void pt_istio_certs_stop(void)
{
    if (!ist.started)
        return;
    pt_timer_cancel(&ist.debounce);
    pt_timer_cancel(&ist.retry);
    pt_loop_del(ist.loop, &ist.io);
    close(ist.io.fd);
    pthread_mutex_lock(&ist.lock);
    pt_istio_pair_free(&ist.pair);
    ist.have = false;
    ist.error[0] = '\0';
    pthread_mutex_unlock(&ist.lock);
    ist.started = ist.watching = false;
}

static char *dup_text(const char *s, size_t n)
{
    return s ? pt_xstrndup(s, n) : NULL;
}

bool pt_istio_certs_get(struct pt_istio_pair *out)
{
    bool have;

    *out = (struct pt_istio_pair){ 0 };
    pthread_mutex_lock(&ist.lock);
    have = ist.have;
    if (have) {
        *out = ist.pair;
        out->key_pem = dup_text(ist.pair.key_pem, ist.pair.key_len);
        out->chain_pem = dup_text(ist.pair.chain_pem, ist.pair.chain_len);
        out->root_pem = dup_text(ist.pair.root_pem, ist.pair.root_len);
    }
    snprintf(out->error, sizeof(out->error), "%s", ist.error);
    pthread_mutex_unlock(&ist.lock);
    return have;
}

void pt_istio_pair_free(struct pt_istio_pair *p)
{
    if (p->key_pem != NULL)
        OPENSSL_cleanse(p->key_pem, p->key_len);
    free(p->key_pem);
    free(p->chain_pem);
    free(p->root_pem);
    *p = (struct pt_istio_pair){ 0 };
}

int pt_istio_inject_secret(struct pt_resources *r, const char *ns)
{
    static const char *const keys[] = { "tls.crt", "tls.key", "ca.crt" };
    struct pt_istio_pair p;
    int rc;

    if (r->_arena == NULL)
        return PT_INVAL;
    if (!pt_istio_certs_get(&p))
        return 0;
    const char *vals[] = { p.chain_pem, p.key_pem, p.root_pem };
    size_t lens[] = { p.chain_len, p.key_len, p.root_len };
    rc = pt_tls__add_secret(r, "istio-certs", ns, ist.dir, true, keys, vals, lens,
                            p.root_pem ? 3 : 2);
    pt_istio_pair_free(&p);
    return rc;
}
