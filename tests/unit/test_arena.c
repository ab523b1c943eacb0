/* Unit tests for src/core/arena.c and src/core/strmap.c, the config loader's allocators. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/arena.h"
#include "core/strmap.h"

static void test_arena_alloc(void **state)
{
    struct pt_arena a = { 0 };
    char *small[1000];
    for (size_t i = 0; i < 1000; i++) {
        small[i] = pt_arena_alloc(&a, i % 50 + 1);
        assert_int_equal((uintptr_t)small[i] % 16, 0);
        for (size_t j = 0; j < i % 50 + 1; j++)
            assert_int_equal(small[i][j], 0); /* zeroed */
        memset(small[i], (int)i, i % 50 + 1);
    }
    char *big = pt_arena_alloc(&a, 1 << 20); /* its own chunk */
    memset(big, 1, 1 << 20);
    char *after = pt_arena_alloc(&a, 8); /* still served from the current chunk */
    assert_non_null(after);
    for (size_t i = 0; i < 1000; i++)
        assert_int_equal((unsigned char)small[i][0], (unsigned char)i);
    assert_non_null(pt_arena_alloc(&a, 0));
    assert_true(pt_arena_allocated(&a) >= (1 << 20));
    pt_arena_free_all(&a);
    assert_int_equal(pt_arena_allocated(&a), 0);
    pt_arena_free_all(&a); /* empty again: freeing twice is harmless */
}

static void test_arena_strings(void **state)
{
    struct pt_arena a = { 0 };
    assert_null(pt_arena_strdup(&a, NULL));
    assert_string_equal(pt_arena_strdup(&a, "hello"), "hello");
    char *s = pt_arena_strndup(&a, "a\0b", 3);
    assert_memory_equal(s, "a\0b\0", 4);
    int *arr = pt_arena_alloc_array(&a, 4, sizeof(int));
    for (int i = 0; i < 4; i++)
        arr[i] = i + 1;
    int *grown = pt_arena_grow(&a, arr, 4, 8, sizeof(int));
    assert_int_equal(grown[3], 4);
    assert_int_equal(grown[7], 0);
    pt_arena_free_all(&a);
}

static void test_strmap(void **state)
{
    struct pt_strmap m = { 0 };
    assert_null(pt_strmap_get(&m, "x", 1));
    static char keys[5000][16];
    for (int i = 0; i < 5000; i++) {
        snprintf(keys[i], sizeof(keys[i]), "k%d", i);
        pt_strmap_put(&m, keys[i], strlen(keys[i]), keys[i]);
    }
    for (int i = 0; i < 5000; i++)
        assert_ptr_equal(pt_strmap_get(&m, keys[i], strlen(keys[i])), keys[i]);
    assert_null(pt_strmap_get(&m, "k5000", 5));
    pt_strmap_put(&m, "k1", 2, keys[2]); /* replace */
    assert_ptr_equal(pt_strmap_get(&m, "k1", 2), keys[2]);
    pt_strmap_put(&m, "", 0, keys[0]); /* the empty key */
    assert_ptr_equal(pt_strmap_get(&m, "", 0), keys[0]);
    pt_strmap_free(&m);
    assert_null(pt_strmap_get(&m, "k1", 2));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arena_alloc),
        cmocka_unit_test(test_arena_strings),
        cmocka_unit_test(test_strmap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
