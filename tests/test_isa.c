/*
 * test_isa.c: the run-time kernel choice (trainer/nn_isa.h). Every
 * dispatched name is a macro reading the table (the two lists in nn_isa.h
 * agree); selecting an ISA fills every entry with that build's functions;
 * LEJEPA_ISA picks the build at start-up, and an unknown value or an ISA
 * the CPU lacks stops the program with a message naming it. The kernels'
 * numbers under each ISA are the nn_* and sigreg tests, which meson runs
 * once per ISA (the *_avx2 tests force the baseline).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn_isa.h"
#include "testing.h"
#include "util.h"

#define STR(x) #x
#define EXPANDED(x) STR(x)

static void test_every_name_goes_through_the_table(void)
{
    int bad = 0, n = 0;
#define CHECK_NAME(name)                                                     \
    do {                                                                     \
        n++;                                                                 \
        if (strcmp(EXPANDED(name), "(*nn_isa_table." #name ")") != 0) {      \
            fprintf(stderr, "%s expands to %s\n", #name, EXPANDED(name));    \
            bad++;                                                           \
        }                                                                    \
    } while (0);
    NN_ISA_KERNELS(CHECK_NAME)
#undef CHECK_NAME
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT(n * sizeof(void (*)(void)) == sizeof(struct nn_isa_table));
}

/* The table as an array of entries (every member is a function pointer). */
static void table_entries(void (**out)(void), size_t n)
{
    CU_ASSERT_FATAL(n * sizeof *out == sizeof nn_isa_table);
    memcpy(out, &nn_isa_table, sizeof nn_isa_table);
}

static void test_select_fills_the_table(void)
{
    enum { N = sizeof(struct nn_isa_table) / sizeof(void (*)(void)) };
    void (*base[N])(void), (*wide[N])(void);
    const enum nn_isa start = nn_isa_current();
    char err[ERR_LEN];
    CU_ASSERT_TRUE_FATAL(nn_isa_supported(NN_ISA_AVX2));
    CU_ASSERT_EQUAL_FATAL(nn_isa_select(NN_ISA_AVX2, err), 0);
    CU_ASSERT_EQUAL(nn_isa_current(), NN_ISA_AVX2);
    table_entries(base, N);
    int null = 0;
    for (int i = 0; i < N; i++)
        null += base[i] == NULL;
    CU_ASSERT_EQUAL(null, 0);
    if (nn_isa_supported(NN_ISA_AVX512)) {
        CU_ASSERT_EQUAL_FATAL(nn_isa_select(NN_ISA_AVX512, err), 0);
        CU_ASSERT_EQUAL(nn_isa_current(), NN_ISA_AVX512);
        table_entries(wide, N);
        int same = 0;
        for (int i = 0; i < N; i++)
            same += wide[i] == base[i] || wide[i] == NULL;
        CU_ASSERT_EQUAL(same, 0);
    } else {
        CU_ASSERT_NOT_EQUAL(nn_isa_select(NN_ISA_AVX512, err), 0);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "avx512"));
        CU_ASSERT_EQUAL(nn_isa_current(), NN_ISA_AVX2);
    }
    CU_ASSERT_EQUAL(nn_isa_select(start, err), 0);
}

/* This program with LEJEPA_ISA=value, printing the ISA it runs; this
 * process's own LEJEPA_ISA is put back. */
static int run_with(const char *value, char *out, size_t cap)
{
    const char *was = getenv("LEJEPA_ISA");
    char *saved = was ? xstrdup(was) : NULL;
    CU_ASSERT_EQUAL_FATAL(setenv("LEJEPA_ISA", value, 1), 0);
    int rc = testing_run_program("tests/test_isa", "--print-isa", out, cap);
    if (saved)
        setenv("LEJEPA_ISA", saved, 1);
    else
        unsetenv("LEJEPA_ISA");
    free(saved);
    return rc;
}

static void test_environment_forces_the_choice(void)
{
    char out[512];
    CU_ASSERT_EQUAL(run_with("avx2", out, sizeof out), 0);
    CU_ASSERT_STRING_EQUAL(out, "avx2\n");
    const bool wide = nn_isa_supported(NN_ISA_AVX512);
    CU_ASSERT_EQUAL(run_with("auto", out, sizeof out), 0);
    CU_ASSERT_STRING_EQUAL(out, wide ? "avx512\n" : "avx2\n");
    if (wide) {
        CU_ASSERT_EQUAL(run_with("avx512", out, sizeof out), 0);
        CU_ASSERT_STRING_EQUAL(out, "avx512\n");
    } else {
        CU_ASSERT_EQUAL(run_with("avx512", out, sizeof out), 2);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "LEJEPA_ISA=avx512"));
    }
    CU_ASSERT_EQUAL(run_with("sse2", out, sizeof out), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "LEJEPA_ISA=sse2: expected auto, avx2 or avx512"));
}

/* Meson sets LEJEPA_ISA for the forced runs: the table must follow it. */
static void test_current_matches_environment(void)
{
    const char *want = getenv("LEJEPA_ISA");
    if (want && strcmp(want, "avx2") == 0)
        CU_ASSERT_EQUAL(nn_isa_current(), NN_ISA_AVX2);
    if (!want || !*want || strcmp(want, "auto") == 0)
        CU_ASSERT_EQUAL(nn_isa_current(), nn_isa_supported(NN_ISA_AVX512)
                                              ? NN_ISA_AVX512
                                              : NN_ISA_AVX2);
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--print-isa") == 0) {
        printf("%s\n", nn_isa_name(nn_isa_current()));
        return 0;
    }
    static const struct testing_case cases[] = {
        {"every dispatched name reads the table", test_every_name_goes_through_the_table},
        {"selecting an ISA fills the table", test_select_fills_the_table},
        {"LEJEPA_ISA forces the choice", test_environment_forces_the_choice},
        {"the table follows LEJEPA_ISA", test_current_matches_environment},
        {NULL, NULL},
    };
    return testing_run("isa", cases);
}
