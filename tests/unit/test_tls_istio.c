/* Unit tests for src/tls/istio.c, the Istio certificate directory watcher: a real event loop
 * and a temporary directory written the way istio-agent writes it (each file atomically, one
 * after the other: key.pem, cert-chain.pem, root-cert.pem). The invariant checked after every
 * step: a pair handed out always has a key that matches its first certificate. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/err.h>

#include "config/load.h"
#include "core/common.h"
#include "core/log.h"
#include "core/loop.h"
#include "tls/tls.h"

#include "tls-helpers/certgen.h"

/* One workload identity: key, certificate (PEM), serial. */
struct workload {
    EVP_PKEY *key;
    X509 *cert;
    char *key_pem, *chain_pem;
    char serial[80];
};

static struct {
    EVP_PKEY *root_key;
    X509 *root;
    char *root_pem;
    struct workload w[3];
} pki;

static struct {
    struct pt_loop *loop;
    char dir[64];
    int changes;
} t;

#define SPIFFE "critical,URI:spiffe://cluster.local/ns/ambassador/sa/portico"

static int setup_pki(void **state)
{
    pki.root_key = th_rsa();
    pki.root = th_cert(pki.root_key, "Istio Root", NULL, true, NULL, NULL, 1, 3650);
    pki.root_pem = th_pem_certs(pki.root, NULL);
    for (int i = 0; i < 3; i++) {
        struct workload *w = &pki.w[i];
        w->key = th_rsa();
        w->cert = th_cert(w->key, NULL, SPIFFE, false, pki.root, pki.root_key, 1, 1 + i);
        w->key_pem = th_pem_key(w->key);
        w->chain_pem = th_pem_certs(w->cert, pki.root); /* leaf first, then the root */
        pt_tls__serial_hex(w->cert, w->serial, sizeof(w->serial));
    }
    pt_log_set_level(PT_LOG_ERROR);
    return 0;
}

static int teardown_pki(void **state)
{
    EVP_PKEY_free(pki.root_key);
    X509_free(pki.root);
    free(pki.root_pem);
    for (int i = 0; i < 3; i++) {
        EVP_PKEY_free(pki.w[i].key);
        X509_free(pki.w[i].cert);
        free(pki.w[i].key_pem);
        free(pki.w[i].chain_pem);
    }
    return 0;
}

static void on_change(void *arg)
{
    assert_ptr_equal(arg, &t);
    t.changes++;
}

static int setup(void **state)
{
    t.loop = pt_loop_new();
    assert_non_null(t.loop);
    th_mkdtemp(t.dir, sizeof(t.dir));
    t.changes = 0;
    return 0;
}

static int teardown(void **state)
{
    pt_istio_certs_stop();
    pt_loop_free(t.loop);
    th_rmdir(t.dir);
    return 0;
}

static void run_for(uint64_t ms)
{
    uint64_t end = pt_now_ms() + ms;
    while (pt_now_ms() < end)
        pt_loop_run_once(t.loop, 10);
}

/* check_invariant: the current pair (if any) has a key matching its first certificate, and
 * is exactly one of the test workloads. Returns its index, or -1 when there is no pair. */
static int check_invariant(void)
{
    struct pt_istio_pair p;
    EVP_PKEY *key = NULL;
    X509 *leaf = NULL;
    char err[200];

    if (!pt_istio_certs_get(&p))
        return -1;
    assert_int_equal(pt_tls__parse_key(p.key_pem, p.key_len, &key, err, sizeof(err)), 0);
    assert_int_equal(pt_tls__parse_certs(p.chain_pem, p.chain_len, &leaf, NULL, err,
                                         sizeof(err)), 0);
    assert_int_equal(X509_check_private_key(leaf, key), 1);
    int which = -1;
    for (int i = 0; i < 3; i++)
        if (X509_cmp(leaf, pki.w[i].cert) == 0)
            which = i;
    assert_true(which >= 0);
    assert_string_equal(p.serial, pki.w[which].serial);
    assert_int_equal(p.not_after, pt_tls_cert_not_after(pki.w[which].cert));
    EVP_PKEY_free(key);
    X509_free(leaf);
    pt_istio_pair_free(&p);
    return which;
}

static void write_workload(int i, bool root)
{
    th_write(t.dir, "key.pem", pki.w[i].key_pem);
    th_write(t.dir, "cert-chain.pem", pki.w[i].chain_pem);
    if (root)
        th_write(t.dir, "root-cert.pem", pki.root_pem);
}

/* An empty directory blocks nothing: no pair, no Secret, a reason for diag. */
static void test_empty_dir(void **state)
{
    struct pt_istio_pair p;
    struct pt_resources *r = pt_config_load_string("", NULL, NULL);

    assert_int_equal(pt_istio_certs_start(t.loop, t.dir, on_change, &t), 0);
    assert_int_equal(pt_istio_certs_start(t.loop, t.dir, on_change, &t), PT_INVAL);
    run_for(150);
    assert_false(pt_istio_certs_get(&p));
    assert_null(p.key_pem);
    assert_non_null(strstr(p.error, "waiting for key.pem"));
    assert_int_equal(pt_istio_inject_secret(r, "ambassador"), 0);
    assert_int_equal(r->nsecrets, 0);
    assert_int_equal(t.changes, 0);

    /* an unrelated file does not wake anything up */
    th_write(t.dir, "README", "hello");
    run_for(150);
    assert_int_equal(t.changes, 0);

    /* the first pair arrives later */
    write_workload(0, true);
    run_for(250);
    assert_int_equal(t.changes, 1);
    assert_int_equal(check_invariant(), 0);
    assert_true(pt_istio_certs_get(&p));
    assert_int_equal(p.generation, 1);
    assert_string_equal(p.error, "");
    assert_non_null(p.root_pem);
    pt_istio_pair_free(&p);
    pt_resources_free(r);
}

/* Files present at start are loaded before pt_istio_certs_start returns, without a callback. */
static void test_loaded_at_start(void **state)
{
    write_workload(1, false);
    assert_int_equal(pt_istio_certs_start(t.loop, t.dir, on_change, &t), 0);
    assert_int_equal(check_invariant(), 1);
    struct pt_istio_pair p;
    assert_true(pt_istio_certs_get(&p));
    assert_null(p.root_pem); /* root-cert.pem is optional */
    pt_istio_pair_free(&p);
    run_for(150);
    assert_int_equal(t.changes, 0);
}

/* Rotation as istio-agent does it: key first. In between, key and chain do not match, and the
 * previous pair must stay. Then the new pair, with its serial, and one callback. */
static void test_rotation_key_first(void **state)
{
    struct pt_istio_pair p;

    write_workload(0, true);
    assert_int_equal(pt_istio_certs_start(t.loop, t.dir, on_change, &t), 0);
    assert_int_equal(check_invariant(), 0);

    th_write(t.dir, "key.pem", pki.w[1].key_pem);
    run_for(250);
    assert_int_equal(t.changes, 0);
    assert_int_equal(check_invariant(), 0); /* the old pair, never the mismatched one */
    assert_true(pt_istio_certs_get(&p));
    assert_non_null(strstr(p.error, "key.pem does not match the first certificate"));
    pt_istio_pair_free(&p);

    th_write(t.dir, "cert-chain.pem", pki.w[1].chain_pem);
    run_for(250);
    assert_int_equal(t.changes, 1);
    assert_int_equal(check_invariant(), 1);
    assert_true(pt_istio_certs_get(&p));
    assert_string_equal(p.serial, pki.w[1].serial);
    assert_string_equal(p.error, "");
    assert_int_equal(p.generation, 2);
    pt_istio_pair_free(&p);

    /* the same root written again is not a change */
    th_write(t.dir, "root-cert.pem", pki.root_pem);
    run_for(250);
    assert_int_equal(t.changes, 1);
}

/* Writes at random moments never expose a mismatched pair (check_invariant); once the
 * writes settle, the last pair is the one in force. */
static void test_rotation_random_timing(void **state)
{
    srand(1234);
    write_workload(2, true);
    assert_int_equal(pt_istio_certs_start(t.loop, t.dir, on_change, &t), 0);
    int last = 2;
    for (int round = 0; round < 12; round++) {
        int next = (last + 1 + rand() % 2) % 3;
        th_write(t.dir, "key.pem", pki.w[next].key_pem);
        run_for((uint64_t)(rand() % 250));
        check_invariant();
        th_write(t.dir, "cert-chain.pem", pki.w[next].chain_pem);
        run_for((uint64_t)(rand() % 250));
        check_invariant();
        last = next;
    }
    run_for(250);
    assert_int_equal(check_invariant(), last);
    assert_true(t.changes >= 1 && t.changes <= 12);
}

/* A truncated chain or a broken key is refused; the previous pair stays. Deleting the files
 * does not withdraw it either. */
static void test_bad_files_keep_previous(void **state)
{
    char half[8192];
    struct pt_istio_pair p;

    write_workload(0, true);
    assert_int_equal(pt_istio_certs_start(t.loop, t.dir, on_change, &t), 0);

    snprintf(half, sizeof(half), "%.*s", (int)(strlen(pki.w[1].chain_pem) * 3 / 4),
             pki.w[1].chain_pem); /* leaf complete, root cut short */
    th_write(t.dir, "key.pem", pki.w[1].key_pem);
    th_write(t.dir, "cert-chain.pem", half);
    run_for(250);
    assert_int_equal(check_invariant(), 0);
    assert_true(pt_istio_certs_get(&p));
    assert_non_null(strstr(p.error, "cert-chain.pem: certificate 2 does not parse"));
    pt_istio_pair_free(&p);

    th_write(t.dir, "key.pem", "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n");
    run_for(250);
    assert_int_equal(check_invariant(), 0);
    assert_true(pt_istio_certs_get(&p));
    assert_non_null(strstr(p.error, "key.pem: private key does not parse"));
    pt_istio_pair_free(&p);

    th_write(t.dir, "root-cert.pem", "garbage");
    write_workload(1, false);
    run_for(250);
    assert_int_equal(check_invariant(), 0); /* a root that does not parse is refused too */
    th_write(t.dir, "root-cert.pem", pki.root_pem);
    run_for(250);
    assert_int_equal(check_invariant(), 1);
    assert_int_equal(t.changes, 1);

    char path[128];
    snprintf(path, sizeof(path), "%s/key.pem", t.dir);
    assert_int_equal(unlink(path), 0);
    run_for(250);
    assert_int_equal(check_invariant(), 1);
    assert_int_equal(t.changes, 1);
}

/* The pair becomes the Secret istio-certs in the Ambassador namespace, replacing a Kubernetes
 * Secret of that name, and a TLSContext `secret: istio-certs` originates with it. */
static void test_inject_secret(void **state)
{
    static char yaml[40000];
    char err[256];
    struct pt_resources *r;

    yaml[0] = '\0';
    th_secret_yaml(yaml, sizeof(yaml), "istio-certs", "ambassador", pki.w[2].chain_pem,
                   pki.w[2].key_pem, NULL);
    th_secret_yaml(yaml, sizeof(yaml), "istio-certs", "default", pki.w[2].chain_pem,
                   pki.w[2].key_pem, NULL);
    r = pt_config_load_string(yaml, "k8s.yaml", NULL);
    assert_int_equal(r->nsecrets, 2);

    write_workload(0, true);
    assert_int_equal(pt_istio_certs_start(t.loop, t.dir, on_change, &t), 0);
    assert_int_equal(pt_istio_inject_secret(r, "ambassador"), 1);
    assert_int_equal(r->nsecrets, 2); /* replaced, not added */
    const struct pt_secret_res *s = pt_tls_find_secret(r, "istio-certs", true, "ambassador");
    assert_non_null(s);
    assert_string_equal(s->type, "kubernetes.io/tls");
    assert_int_equal(s->ndata, 3);
    assert_string_equal(s->data[0].key, "tls.crt");
    assert_string_equal(s->data[0].value, pki.w[0].chain_pem);
    assert_string_equal(s->data[1].key, "tls.key");
    assert_string_equal(s->data[2].key, "ca.crt");
    assert_string_equal(s->data[2].value, pki.root_pem);
    assert_string_equal(s->meta.origin.file, t.dir);

    /* TLSContext istio-upstream: secret istio-certs, alpn_protocols istio */
    struct pt_tls_settings ts = { .secret = "istio-certs", .secret_namespacing = true,
                                  .alpn_protocols = "istio" };
    SSL_CTX *ctx = pt_tls_client_ctx_new(&ts, r, "ambassador", err, sizeof(err));
    assert_non_null(ctx);
    assert_int_equal(X509_cmp(SSL_CTX_get0_certificate(ctx), pki.w[0].cert), 0);
    assert_int_equal(SSL_CTX_get_verify_mode(ctx), SSL_VERIFY_NONE); /* as Emissary */
    SSL_CTX_free(ctx);
    /* opting in to verification against the mesh root: ca_secret names the same Secret */
    ts.ca_secret = "istio-certs";
    ctx = pt_tls_client_ctx_new(&ts, r, "ambassador", err, sizeof(err));
    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_get_verify_mode(ctx), SSL_VERIFY_PEER);
    SSL_CTX_free(ctx);

    /* a rotation, then a new configuration load: the new pair is injected */
    pt_resources_free(r);
    write_workload(1, true);
    run_for(250);
    assert_int_equal(t.changes, 1);
    r = pt_config_load_string("", NULL, NULL);
    assert_int_equal(pt_istio_inject_secret(r, "ambassador"), 1);
    assert_int_equal(r->nsecrets, 1);
    assert_string_equal(r->secrets[0].data[0].value, pki.w[1].chain_pem);
    pt_resources_free(r);

    struct pt_resources bare = { 0 };
    assert_int_equal(pt_istio_inject_secret(&bare, "ambassador"), PT_INVAL);
}

/* A directory that does not exist yet is polled for; nothing fails. */
static void test_missing_dir(void **state)
{
    char dir[128];
    struct pt_istio_pair p;

    snprintf(dir, sizeof(dir), "%s/later", t.dir);
    assert_int_equal(pt_istio_certs_start(t.loop, dir, on_change, &t), 0);
    assert_false(pt_istio_certs_get(&p));
    assert_non_null(strstr(p.error, "cannot watch"));

    /* the volume shows up with a pair in it: found by the next poll (every 5 s) */
    assert_int_equal(mkdir(dir, 0700), 0);
    th_write(dir, "key.pem", pki.w[0].key_pem);
    th_write(dir, "cert-chain.pem", pki.w[0].chain_pem);
    run_for(5300);
    assert_int_equal(t.changes, 1);
    assert_int_equal(check_invariant(), 0);
    th_write(dir, "key.pem", pki.w[1].key_pem); /* and it is watched from then on */
    th_write(dir, "cert-chain.pem", pki.w[1].chain_pem);
    run_for(250);
    assert_int_equal(t.changes, 2);
    assert_int_equal(check_invariant(), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_empty_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loaded_at_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_key_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_random_timing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_files_keep_previous, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inject_secret, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_dir, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, setup_pki, teardown_pki);
    pt_tls_shutdown();
    return rc;
}
