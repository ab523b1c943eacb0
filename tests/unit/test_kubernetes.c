/* Unit tests for the Kubernetes source's pure parts: the object store (sources/kubestore.c)
 * and finding credentials (sources/kubeconfig.c). The watch loop itself is tested end to end
 * against tests/integration/fake_apiserver.py. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/load.h"
#include "model/resource-t.h"
#include "core/common.h"
#include "sources/kubeconfig.h"
#include "sources/kubestore.h"

#define AMB "getambassador.io/v3alpha1"

static json_t *obj(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    if (j == NULL)
        fail_msg("bad JSON in test: %s", e.text);
    return j;
}

static int put(struct pt_kubestore *s, const char *text, const char *kind, const char *api)
{
    json_t *j = obj(text);
    int rc = pt_kubestore_put(s, j, kind, api);
    json_decref(j);
    return rc;
}

/* ---- store ---- */

static void test_store_put_replace_remove(void **state)
{
    struct pt_kubestore s = {0};
    json_t *del;

    /* a LIST item: no kind, bookkeeping that changes on every write */
    assert_int_equal(
        put(&s,
            "{\"metadata\":{\"name\":\"m\",\"namespace\":\"a\",\"resourceVersion\":\"5\","
            "\"managedFields\":[{}],\"generation\":1},\"spec\":{\"prefix\":\"/x/\"},"
            "\"status\":{}}",
            "Mapping", AMB),
        1);
    assert_int_equal(s.n, 1);
    /* the WATCH event for the same object, in another key order and a new resourceVersion */
    assert_int_equal(put(&s,
                         "{\"kind\":\"Mapping\",\"apiVersion\":\"" AMB
                         "\",\"spec\":{\"prefix\":\"/x/\"},"
                         "\"metadata\":{\"namespace\":\"a\",\"name\":\"m\",\"resourceVersion\":"
                         "\"9\",\"generation\":2}}",
                         "Mapping", AMB),
                     0);
    assert_int_equal(
        put(&s, "{\"metadata\":{\"name\":\"m\",\"namespace\":\"a\"},\"spec\":{\"prefix\":\"/y/\"}}",
            "Mapping", AMB),
        1);
    assert_int_equal(
        put(&s, "{\"metadata\":{\"name\":\"m\",\"namespace\":\"b\"},\"spec\":{}}", "Mapping", AMB),
        1);
    assert_int_equal(s.n, 2);
    assert_int_equal(put(&s, "{\"metadata\":{\"namespace\":\"b\"}}", "Mapping", AMB), PT_BADMSG);
    del = obj("{\"metadata\":{\"name\":\"m\",\"namespace\":\"a\"}}");
    assert_int_equal(pt_kubestore_remove(&s, del), 1);
    assert_int_equal(pt_kubestore_remove(&s, del), 0);
    json_decref(del);
    assert_int_equal(s.n, 1);
    pt_kubestore_free(&s);
    assert_int_equal(s.n, 0);
}

static void test_store_noisy_annotations_are_no_change(void **state)
{
    struct pt_kubestore s = {0};

    assert_int_equal(
        put(&s,
            "{\"metadata\":{\"name\":\"e\",\"annotations\":{\"control-plane.alpha.kubernetes.io/"
            "leader\":\"t1\"}},\"subsets\":[]}",
            "Endpoints", "v1"),
        1);
    assert_int_equal(
        put(&s,
            "{\"metadata\":{\"name\":\"e\",\"annotations\":{\"control-plane.alpha.kubernetes.io/"
            "leader\":\"t2\"}},\"subsets\":[]}",
            "Endpoints", "v1"),
        0);
    assert_int_equal(
        put(&s, "{\"metadata\":{\"name\":\"e\",\"annotations\":{\"x\":\"1\"}},\"subsets\":[]}",
            "Endpoints", "v1"),
        1);
    pt_kubestore_free(&s);
}

static void test_store_equal_and_grow(void **state)
{
    struct pt_kubestore a = {0}, b = {0};
    char text[200];

    for (int i = 0; i < 500; i++) {
        snprintf(text, sizeof(text),
                 "{\"metadata\":{\"name\":\"s%d\"},\"spec\":{\"ports\":[{\"port\":%d}]}}", i,
                 i + 1);
        assert_int_equal(put(&a, text, "Service", "v1"), 1);
        snprintf(text, sizeof(text),
                 "{\"metadata\":{\"name\":\"s%d\"},\"spec\":{\"ports\":[{\"port\":%d}]}}", 499 - i,
                 500 - i);
        assert_int_equal(put(&b, text, "Service", "v1"), 1);
    }
    assert_int_equal(a.n, 500);
    assert_true(pt_kubestore_equal(&a, &b));
    assert_int_equal(put(&b, "{\"metadata\":{\"name\":\"s7\"},\"spec\":{\"ports\":[{\"port\":9}]}}",
                         "Service", "v1"),
                     1);
    assert_false(pt_kubestore_equal(&a, &b));
    pt_kubestore_free(&a);
    pt_kubestore_free(&b);
}

/* The List document loads as configuration, each kind with its kind and apiVersion. */
static void test_list_json_loads(void **state)
{
    struct pt_kubestore m = {0}, e = {0}, empty = {0};
    const struct pt_kubestore *stores[] = {&m, &empty, &e};
    struct pt_resources *r;
    size_t len;
    char *text;

    assert_int_equal(
        put(&m,
            "{\"metadata\":{\"name\":\"b\"},\"spec\":{\"hostname\":\"*\",\"prefix\":\"/b/\","
            "\"service\":\"q\"}}",
            "Mapping", AMB),
        1);
    assert_int_equal(
        put(&m,
            "{\"metadata\":{\"name\":\"a\"},\"spec\":{\"hostname\":\"*\",\"prefix\":\"/a\\u00e9/\","
            "\"service\":\"q\"}}",
            "Mapping", AMB),
        1);
    assert_int_equal(
        put(&e,
            "{\"metadata\":{\"name\":\"q\"},\"subsets\":[{\"addresses\":[{\"ip\":\"10.0.0.1\"}],"
            "\"ports\":[{\"port\":8080}]}]}",
            "Endpoints", "v1"),
        1);
    text = pt_kubestore_list_json(stores, 3, &len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    r = pt_config_load_string(text, "kubernetes", NULL);
    assert_int_equal(r->diag.nerrors, 0);
    assert_int_equal(r->nmappings, 2);
    assert_string_equal(r->mappings[0].meta.name, "a"); /* sorted */
    assert_string_equal(r->mappings[0].prefix, "/a\xc3\xa9/");
    assert_int_equal(r->nendpoints, 1);
    pt_resources_free(r);
    free(text);
    text = pt_kubestore_list_json(stores + 1, 1, NULL);
    assert_string_equal(text, "{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[\n]}\n");
    free(text);
    pt_kubestore_free(&m);
    pt_kubestore_free(&e);
}

/* ---- credentials ---- */

static char dir[64];

static int setup_dir(void **state)
{
    strcpy(dir, "/tmp/pt-kubeconfig-XXXXXX");
    assert_non_null(mkdtemp(dir));
    unsetenv("KUBECONFIG");
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
    unsetenv("PORTICO_SERVICEACCOUNT_DIR");
    setenv("HOME", dir, 1);
    return 0;
}

static int teardown_dir(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static void write_file(const char *name, const char *text)
{
    char path[256];
    FILE *f;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_non_null(f = fopen(path, "w"));
    fputs(text, f);
    fclose(f);
}

static void test_kubeconfig_inline_data_and_token(void **state)
{
    struct pt_kube_creds c;
    char err[256] = "", path[256];
    char *tok;

    /* "LS0tCg==" is "---\n"; the user is in a second file (kubectl merges them) */
    write_file("a.yaml",
               "current-context: dev\ncontexts:\n- name: dev\n  context: {cluster: c1, user: u1}\n"
               "clusters:\n- name: c1\n  cluster:\n    server: https://10.1.2.3:6443/\n"
               "    certificate-authority-data: LS0tCg==\n");
    write_file("b.yaml",
               "users:\n- name: u1\n  user:\n    token: abc\n    client-certificate: certs/c.pem\n"
               "    client-key-data: LS0tCg==\n");
    snprintf(path, sizeof(path), "%s/missing.yaml:%s/a.yaml:%s/b.yaml", dir, dir, dir);
    setenv("KUBECONFIG", path, 1);
    assert_int_equal(pt_kubeconfig_load(&c, err, sizeof(err)), 0);
    assert_string_equal(c.server, "https://10.1.2.3:6443");
    assert_int_equal(c.ca_pem_len, 4);
    assert_memory_equal(c.ca_pem, "---\n", 4);
    assert_null(c.ca_file);
    assert_false(c.insecure);
    snprintf(path, sizeof(path), "%s/certs/c.pem", dir);
    assert_string_equal(c.cert_file, path);
    assert_int_equal(c.key_pem_len, 4);
    tok = pt_kube_creds_token(&c);
    assert_string_equal(tok, "abc");
    free(tok);
    pt_kube_creds_free(&c);
    assert_null(c.server);
}

static void test_kubeconfig_refuses_exec_and_reports_missing(void **state)
{
    struct pt_kube_creds c;
    char err[512] = "", path[256];

    write_file("exec.yaml",
               "current-context: x\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\n"
               "clusters:\n- name: c\n  cluster: {server: 'https://h'}\n"
               "users:\n- name: u\n  user:\n    exec: {command: aws}\n");
    snprintf(path, sizeof(path), "%s/exec.yaml", dir);
    setenv("KUBECONFIG", path, 1);
    assert_int_equal(pt_kubeconfig_load(&c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "exec plugin"));
    assert_null(c.server);

    write_file("noctx.yaml", "current-context: nope\ncontexts: []\n");
    snprintf(path, sizeof(path), "%s/noctx.yaml", dir);
    setenv("KUBECONFIG", path, 1);
    assert_int_equal(pt_kubeconfig_load(&c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "context nope not found"));

    write_file("bad.yaml", "current-context: [\n");
    snprintf(path, sizeof(path), "%s/bad.yaml", dir);
    setenv("KUBECONFIG", path, 1);
    assert_int_equal(pt_kubeconfig_load(&c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not a kubeconfig"));

    unsetenv("KUBECONFIG"); /* no pod, no ~/.kube/config */
    assert_int_equal(pt_kubeconfig_load(&c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "no Kubernetes credentials"));
}

static void test_in_cluster_and_home(void **state)
{
    struct pt_kube_creds c;
    char err[256] = "", path[256];
    char *tok;

    /* ~/.kube/config when not in a pod, basic auth, insecure */
    snprintf(path, sizeof(path), "%s/.kube", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    write_file(
        ".kube/config",
        "current-context: h\ncontexts:\n- name: h\n  context: {cluster: c, user: u}\n"
        "clusters:\n- name: c\n  cluster: {server: 'https://h:1', insecure-skip-tls-verify: true}\n"
        "users:\n- name: u\n  user: {username: admin, password: secret}\n");
    assert_int_equal(pt_kubeconfig_load(&c, err, sizeof(err)), 0);
    assert_true(c.insecure);
    assert_string_equal(c.username, "admin");
    assert_string_equal(c.password, "secret");
    pt_kube_creds_free(&c);

    /* in a pod: the service account wins over ~/.kube/config; the token is read per request */
    write_file("token", "t1\n");
    setenv("PORTICO_SERVICEACCOUNT_DIR", dir, 1);
    setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "6443", 1);
    assert_int_equal(pt_kubeconfig_load(&c, err, sizeof(err)), 0);
    assert_string_equal(c.server, "https://[fd00::1]:6443");
    snprintf(path, sizeof(path), "%s/ca.crt", dir);
    assert_string_equal(c.ca_file, path);
    tok = pt_kube_creds_token(&c);
    assert_string_equal(tok, "t1");
    free(tok);
    write_file("token", "t2");
    tok = pt_kube_creds_token(&c);
    assert_string_equal(tok, "t2");
    free(tok);
    pt_kube_creds_free(&c);
}

static void test_base64(void **state)
{
    size_t n;
    char *p = pt_kube__b64_decode("aGVs\nbG8=", 9, &n);
    assert_non_null(p);
    assert_int_equal(n, 5);
    assert_string_equal(p, "hello");
    free(p);
    assert_null(pt_kube__b64_decode("a", 1, &n));
    assert_null(pt_kube__b64_decode("a=b=", 4, &n));
    assert_null(pt_kube__b64_decode("ab*d", 4, &n));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store_put_replace_remove),
        cmocka_unit_test(test_store_noisy_annotations_are_no_change),
        cmocka_unit_test(test_store_equal_and_grow),
        cmocka_unit_test(test_list_json_loads),
        cmocka_unit_test_setup_teardown(test_kubeconfig_inline_data_and_token, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(test_kubeconfig_refuses_exec_and_reports_missing, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(test_in_cluster_and_home, setup_dir, teardown_dir),
        cmocka_unit_test(test_base64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
