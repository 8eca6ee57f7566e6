/*
 * test_config.c: the config format (proto/config.h): every row of the key
 * table is sound (default parses, in bounds, fits one INI line), files and
 * --set parse strictly with errors that name the source, line, key and value,
 * overrides win, cross-key rules fire, and to_string -> load_string gives
 * back the identical struct.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "config.h"
#include "testing.h"
#include "util.h"

static bool contains(const char *hay, const char *needle)
{
    bool found = strstr(hay, needle) != NULL;
    if (!found)
        fprintf(stderr, "\n  expected \"%s\" in \"%s\"\n", needle, hay);
    return found;
}

static char *write_temp(const char *dir, const char *name, const char *text)
{
    char *path = xmalloc(4096);
    char err[ERR_LEN];
    snprintf(path, 4096, "%s/%s", dir, name);
    CU_ASSERT_EQUAL_FATAL(util_write_file_atomic(path, text, strlen(text), err), 0);
    return path;
}

static void test_table_rows_are_sound(void)
{
    size_t count;
    const struct config_key *keys = config_keys(&count);
    CU_ASSERT_FATAL(count > 30);
    for (size_t i = 0; i < count; i++) {
        const struct config_key *k = &keys[i];
        char err[ERR_LEN] = "";
        struct config c;
        memset(&c, 0, sizeof c);
        CU_ASSERT_PTR_NOT_NULL(k->help);
        CU_ASSERT(k->help && strlen(k->help) > 10);
        CU_ASSERT(k->offset < sizeof(struct config));
        int rc = config_parse_value(k, k->def, (char *)&c + k->offset, err);
        if (rc != 0)
            fprintf(stderr, "\n  default %s.%s = \"%s\": %s\n", k->section,
                    k->key, k->def, err);
        CU_ASSERT_EQUAL(rc, 0);
        /* "key = <longest value>" must fit libinih's line buffer. */
        CU_ASSERT(strlen(k->key) + 3 + config_value_max_len(k) <= INI_MAX_LINE - 2);
        if (k->type == CONFIG_STRING)
            CU_ASSERT(k->len_max < CONFIG_STR_LEN && k->len_min <= k->len_max);
        if (k->type == CONFIG_INT_LIST || k->type == CONFIG_FLOAT_LIST)
            CU_ASSERT(k->len_max <= CONFIG_LIST_MAX && k->len_min <= k->len_max);
        CU_ASSERT(k->int_min <= k->int_max && k->uint_min <= k->uint_max);
        CU_ASSERT(k->float_min <= k->float_max);
        CU_ASSERT_PTR_EQUAL(config_find_key(k->section, k->key), k);
        for (size_t j = 0; j < i; j++) {
            /* rows of a section are contiguous */
            if (strcmp(keys[j].section, k->section) == 0)
                CU_ASSERT(strcmp(keys[i - 1].section, k->section) == 0);
            CU_ASSERT(keys[j].offset != k->offset);
        }
    }
}

static void test_defaults(void)
{
    struct config c;
    char err[ERR_LEN] = "";
    config_defaults(&c);
    CU_ASSERT_EQUAL(config_validate(&c, err), 0);
    CU_ASSERT_STRING_EQUAL(c.run.name, "");
    CU_ASSERT_STRING_EQUAL(c.run.endpoint, "tcp://127.0.0.1:5555");
    CU_ASSERT_STRING_EQUAL(c.run.broadcast, "tcp://127.0.0.1:5556");
    CU_ASSERT_STRING_EQUAL(c.run.dir, "runs");
    CU_ASSERT_EQUAL(c.run.seed, 0);
    CU_ASSERT_EQUAL(c.run.ckpt_every, 500);
    CU_ASSERT_EQUAL(c.run.keep_ckpts, 3);
    CU_ASSERT_EQUAL(c.run.ticket_size, 32);
    CU_ASSERT_EQUAL(c.views.channels, 1);
    CU_ASSERT_EQUAL(c.views.global_size, 28);
    CU_ASSERT_EQUAL(c.views.local_count, 6);
    CU_ASSERT_EQUAL(c.views.ratio_max, 1.3333333333333333);
    CU_ASSERT_EQUAL(c.views.mean.n, 1);
    CU_ASSERT_EQUAL(c.views.mean.v[0], 0.2860);
    CU_ASSERT_EQUAL(c.views.std.v[0], 0.3530);
    CU_ASSERT_EQUAL(c.views.max_pixels, 178956970);
}

static void test_parse_file(void)
{
    char *dir = testing_tmpdir();
    char *path = write_temp(dir, "a.ini",
        "; a comment\n"
        "# another\n"
        "[run]\n"
        "  name = exp-1.a_b   ; inline comment\n"
        "\tseed = 18446744073709551615\n"
        "  endpoint = tcp://10.0.0.1:7000\n"
        "  dir = /tmp/runs dir\n"
        "\n"
        "[views]\n"
        "channels = 3\n"
        "mean = 0.485, 0.456,0.406\n"
        "std = 0.229,0.224,0.225\r\n"
        "flip_p = 0\n"
        "max_pixels = 1000\n");
    struct config c;
    char err[ERR_LEN] = "";
    config_defaults(&c);
    CU_ASSERT_EQUAL_FATAL(config_load_file(&c, path, err), 0);
    CU_ASSERT_STRING_EQUAL(c.run.name, "exp-1.a_b");
    CU_ASSERT_EQUAL(c.run.seed, UINT64_MAX);
    CU_ASSERT_STRING_EQUAL(c.run.endpoint, "tcp://10.0.0.1:7000");
    CU_ASSERT_STRING_EQUAL(c.run.dir, "/tmp/runs dir");
    CU_ASSERT_EQUAL(c.views.channels, 3);
    CU_ASSERT_EQUAL(c.views.mean.n, 3);
    CU_ASSERT_EQUAL(c.views.mean.v[1], 0.456);
    CU_ASSERT_EQUAL(c.views.std.v[2], 0.225);
    CU_ASSERT_EQUAL(c.views.flip_p, 0.0);
    CU_ASSERT_EQUAL(c.views.max_pixels, 1000);
    CU_ASSERT_EQUAL(c.views.global_size, 28);    /* untouched keys keep defaults */
    CU_ASSERT_EQUAL(config_validate(&c, err), 0);

    CU_ASSERT_EQUAL(config_load_file(&c, "/nonexistent/x.ini", err), -1);
    CU_ASSERT(contains(err, "/nonexistent/x.ini"));
    free(path);
    testing_rmtree(dir);
    free(dir);
}

/* Loads text into defaults; returns the rc and leaves the message in err. */
static int load(const char *text, char *err)
{
    struct config c, before;
    config_defaults(&c);
    before = c;
    int rc = config_load_string(&c, text, "t.ini", err);
    if (rc != 0)
        CU_ASSERT_EQUAL(memcmp(&c, &before, sizeof c), 0);  /* unchanged */
    return rc;
}

static void test_errors_name_line_and_key(void)
{
    char err[ERR_LEN];
    CU_ASSERT_EQUAL(load("[run]\nseed = 1\n\n[views]\nflip_p = 0.5\n"
                         "global_size = 12abc\n", err), -1);
    CU_ASSERT(contains(err, "t.ini:6: views.global_size = 12abc: trailing"));

    CU_ASSERT_EQUAL(load("[views]\nglobal_sise = 3\n", err), -1);
    CU_ASSERT(contains(err, "t.ini:2: unknown key global_sise in [views]; "
                            "did you mean global_size?"));
    CU_ASSERT_EQUAL(load("[views]\nzzzzzzzz = 3\n", err), -1);
    CU_ASSERT(contains(err, "its keys: channels, global_count"));
    CU_ASSERT_EQUAL(load("[views]\nseed = 3\n", err), -1);
    CU_ASSERT(contains(err, "unknown key seed in [views]; it belongs in [run]"));
    CU_ASSERT_EQUAL(load("\n[viws]\nflip_p = 3\n", err), -1);
    CU_ASSERT(contains(err, "t.ini:2: unknown section [viws]; did you mean [views]?"));
    CU_ASSERT_EQUAL(load("[run]\nseed = 1\n[nothing_like_it]\n", err), -1);
    CU_ASSERT(contains(err, "t.ini:3: unknown section [nothing_like_it] "
                            "(sections: run, views, model, loss, optim, eval, limits)"));

    CU_ASSERT_EQUAL(load("[run]\nseed = 1\nthis line has no equals sign\n", err), -1);
    CU_ASSERT(contains(err, "t.ini:3: cannot read \"this line has no equals sign\""));
    CU_ASSERT_EQUAL(load("[run\nseed = 1\n", err), -1);
    CU_ASSERT(contains(err, "t.ini:1:"));
    CU_ASSERT_EQUAL(load("seed = 1\n", err), -1);
    CU_ASSERT(contains(err, "t.ini:1: seed = 1: key outside any section"));
    CU_ASSERT_EQUAL(load("[run]\nseed = 1\n[views]\n[run]\nseed = 2\n", err), -1);
    CU_ASSERT(contains(err, "t.ini:5: run.seed is given twice"));

    /* libinih would split a long line silently; we refuse it. */
    char text[600];
    snprintf(text, sizeof text, "[run]\nseed = 1\n; %0300d\n", 0);
    CU_ASSERT_EQUAL(load(text, err), -1);
    CU_ASSERT(contains(err, "t.ini:3: line of 302 characters"));
    /* the first error wins when a syntax error comes later */
    CU_ASSERT_EQUAL(load("[views]\nflip_p = 2\nbroken\n", err), -1);
    CU_ASSERT(contains(err, "t.ini:2: views.flip_p = 2: above the maximum"));
    CU_ASSERT_EQUAL(load("[views]\nbroken\nflip_p = 2\n", err), -1);
    CU_ASSERT(contains(err, "t.ini:2: cannot read"));
}

/* One bad value: the error names the key and the value and the reason. */
static void expect_bad(const char *assignment, const char *reason)
{
    struct config c, before;
    char err[ERR_LEN] = "";
    config_defaults(&c);
    before = c;
    CU_ASSERT_EQUAL(config_set(&c, assignment, err), -1);
    CU_ASSERT_EQUAL(memcmp(&c, &before, sizeof c), 0);
    char key[128], value[41];   /* long values are cut in messages */
    size_t key_len = strcspn(assignment, "=");
    CU_ASSERT_FATAL(key_len < sizeof key && assignment[key_len] == '=');
    memcpy(key, assignment, key_len);
    key[key_len] = '\0';
    snprintf(value, sizeof value, "%s", assignment + key_len + 1);
    CU_ASSERT(contains(err, key));
    CU_ASSERT(contains(err, value));
    CU_ASSERT(contains(err, reason));
}

static void expect_good(const char *assignment)
{
    struct config c;
    char err[ERR_LEN] = "";
    config_defaults(&c);
    int rc = config_set(&c, assignment, err);
    if (rc != 0)
        fprintf(stderr, "\n  %s: %s\n", assignment, err);
    CU_ASSERT_EQUAL(rc, 0);
}

static void test_bounds_of_each_type(void)
{
    expect_good("views.global_size=8");
    expect_good("views.global_size=1024");
    expect_bad("views.global_size=7", "below the minimum 8");
    expect_bad("views.global_size=1025", "above the maximum 1024");
    expect_good("run.seed=18446744073709551615");
    expect_good("views.max_pixels=1099511627776");
    expect_bad("views.max_pixels=1099511627777", "above the maximum");
    expect_bad("views.max_pixels=0", "below the minimum 1");
    expect_good("views.flip_p=0");
    expect_good("views.flip_p=1");
    expect_bad("views.flip_p=1.0000001", "above the maximum 1");
    expect_bad("views.flip_p=-0.1", "below the minimum 0");
    expect_bad("views.hue=0.6", "above the maximum 0.5");
    char name[100];
    snprintf(name, sizeof name, "run.name=%064d", 7);
    expect_good(name);
    snprintf(name, sizeof name, "run.name=%065d", 7);
    expect_bad(name, "65 characters, at most 64");
    expect_bad("run.endpoint=", "at least 1 needed");
    expect_good("views.mean=0.1,0.2,0.3");
    expect_bad("views.mean=0.1,0.2,0.3,0.4", "more than 3 items");
    expect_bad("views.mean=", "0 items, at least 1 needed");
    expect_bad("views.std=0.5,0", "item 2 \"0\": below the minimum 0.001");
}

static void test_bad_values_of_each_type(void)
{
    expect_bad("views.global_count=12abc", "trailing characters \"abc\"");
    expect_bad("views.global_count=99999999999999999999", "out of the range");
    expect_bad("views.global_count=", "empty value");
    expect_bad("views.global_count=2.5", "trailing characters");
    expect_bad("run.seed=-1", "not a non-negative number");
    expect_bad("run.seed=18446744073709551616", "out of the range");
    expect_bad("views.flip_p=nan", "not a finite number");
    expect_bad("views.flip_p=inf", "not a finite number");
    expect_bad("views.flip_p=1e999", "out of the range of a double");
    expect_bad("views.flip_p=0.5x", "trailing characters \"x\"");
    expect_bad("views.flip_p=abc", "not a finite number");
    expect_bad("run.name=a/b", "character '/' at position 2 is not allowed");
    expect_bad("run.name=a b", "character ' '");
    expect_bad("run.dir=runs ;x", "would start an INI comment");
    expect_bad("run.dir=a\tb", "control character 0x09");
    expect_bad("views.mean=0.1,,0.2", "item 2 is empty");
    expect_bad("views.mean=0.1,", "item 2 is empty");
    expect_bad("views.mean=0.1,abc", "item 2 \"abc\": not a finite number");

    /* Types no [run]/[views] key uses yet, on a row of the test's own. */
    static const char *const backbones[] = {"resnet", "vit", NULL};
    struct config_key bool_key = {.section = "t", .key = "flag", .type = CONFIG_BOOL};
    struct config_key enum_key = {.section = "t", .key = "backbone",
                                  .type = CONFIG_ENUM, .choices = backbones};
    struct config_key ints_key = {.section = "t", .key = "depths",
                                  .type = CONFIG_INT_LIST, .len_min = 1,
                                  .len_max = 4, .int_min = 1, .int_max = 64};
    char err[ERR_LEN], text[256];
    bool flag = false;
    const char *yes[] = {"true", "YES", "on", "1"}, *no[] = {"False", "no", "OFF", "0"};
    for (int i = 0; i < 4; i++) {
        CU_ASSERT_EQUAL(config_parse_value(&bool_key, yes[i], &flag, err), 0);
        CU_ASSERT(flag);
        CU_ASSERT_EQUAL(config_parse_value(&bool_key, no[i], &flag, err), 0);
        CU_ASSERT(!flag);
    }
    CU_ASSERT_EQUAL(config_parse_value(&bool_key, "maybe", &flag, err), -1);
    CU_ASSERT(contains(err, "not a boolean"));
    CU_ASSERT_EQUAL(config_parse_value(&bool_key, "2", &flag, err), -1);

    int backbone = 0;
    CU_ASSERT_EQUAL(config_parse_value(&enum_key, "vit", &backbone, err), 0);
    CU_ASSERT_EQUAL(backbone, 1);
    config_format_value(&enum_key, &backbone, text, sizeof text);
    CU_ASSERT_STRING_EQUAL(text, "vit");
    CU_ASSERT_EQUAL(config_parse_value(&enum_key, "ViT", &backbone, err), -1);
    CU_ASSERT(contains(err, "not one of: resnet, vit"));
    CU_ASSERT_EQUAL(backbone, 1);

    struct config_int_list depths;
    memset(&depths, 0xff, sizeof depths);
    CU_ASSERT_EQUAL(config_parse_value(&ints_key, "2, 2,2 ,2", &depths, err), 0);
    CU_ASSERT_EQUAL(depths.n, 4);
    CU_ASSERT(depths.v[0] == 2 && depths.v[3] == 2 && depths.v[4] == 0);
    config_format_value(&ints_key, &depths, text, sizeof text);
    CU_ASSERT_STRING_EQUAL(text, "2,2,2,2");
    CU_ASSERT_EQUAL(config_parse_value(&ints_key, "2,2,2,2,2", &depths, err), -1);
    CU_ASSERT(contains(err, "more than 4 items"));
    CU_ASSERT_EQUAL(config_parse_value(&ints_key, "2,0", &depths, err), -1);
    CU_ASSERT(contains(err, "item 2 \"0\": below the minimum 1"));
    CU_ASSERT_EQUAL(config_parse_value(&ints_key, "2,x", &depths, err), -1);
    CU_ASSERT_EQUAL(config_parse_value(&ints_key, "", &depths, err), -1);
    CU_ASSERT_EQUAL(depths.n, 4);
}

static void test_floats_round_trip_exactly(void)
{
    struct config_key k = {.section = "t", .key = "x", .type = CONFIG_FLOAT,
                           .float_min = -1e308, .float_max = 1e308};
    uint64_t state = 42;
    char text[64], err[ERR_LEN];
    for (int i = 0; i < 2000; i++) {
        double v = testing_rand_normal(&state) *
                   pow(10.0, floor(testing_rand_uniform(&state) * 40.0) - 20.0);
        if (i == 0)
            v = -0.0;
        double back = 1.0;
        config_format_value(&k, &v, text, sizeof text);
        CU_ASSERT_EQUAL(config_parse_value(&k, text, &back, err), 0);
        CU_ASSERT_EQUAL(memcmp(&v, &back, sizeof v), 0);
    }
    double v = 0.3;
    config_format_value(&k, &v, text, sizeof text);
    CU_ASSERT_STRING_EQUAL(text, "0.3");   /* shortest form, not %.17g noise */
}

/* A value for k inside its bounds that differs from the default. */
static void changed_value(const struct config_key *k, char *out, size_t n)
{
    switch (k->type) {
    case CONFIG_BOOL:
        snprintf(out, n, "%s", strcmp(k->def, "true") == 0 ? "false" : "true");
        return;
    case CONFIG_INT:
        snprintf(out, n, "%" PRId64, atoll(k->def) == k->int_max ? k->int_min : k->int_max);
        return;
    case CONFIG_UINT64:
        snprintf(out, n, "%" PRIu64, k->uint_max - 1);
        return;
    case CONFIG_FLOAT:
        snprintf(out, n, "%.17g", k->float_min + (k->float_max - k->float_min) * 0.123456789012345);
        return;
    case CONFIG_STRING:
        snprintf(out, n, "%.*s", k->len_max, k->charset ? "Z.z_9-abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                                                        : "x;y=z:#[a] \"q\";;tcp://h:1/p");
        return;
    case CONFIG_ENUM:
        snprintf(out, n, "%s", strcmp(k->def, k->choices[0]) == 0 ? k->choices[1] : k->choices[0]);
        return;
    case CONFIG_INT_LIST:
    case CONFIG_FLOAT_LIST:
        out[0] = '\0';
        for (int i = 0; i < k->len_max; i++) {
            size_t used = strlen(out);
            if (k->type == CONFIG_INT_LIST)
                snprintf(out + used, n - used, "%s%" PRId64, i ? "," : "", k->int_max - i);
            else
                snprintf(out + used, n - used, "%s%.17g", i ? "," : "",
                         k->float_max - (k->float_max - k->float_min) / (3.0 + i));
        }
        return;
    }
}

static void check_round_trip(const struct config *c)
{
    char err[ERR_LEN] = "";
    char *text = config_to_string(c);
    struct config back;
    config_defaults(&back);
    memset(&back.views.mean, 0x5a, sizeof back.views.mean);  /* must be rewritten */
    int rc = config_load_string(&back, text, "dump", err);
    if (rc != 0)
        fprintf(stderr, "\n  %s\n%s\n", err, text);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_EQUAL(memcmp(c, &back, sizeof back), 0);
    free(text);
}

static void test_round_trip(void)
{
    struct config c, dflt;
    config_defaults(&c);
    dflt = c;
    check_round_trip(&c);

    size_t count;
    const struct config_key *keys = config_keys(&count);
    for (size_t i = 0; i < count; i++) {
        char value[512], assignment[600], err[ERR_LEN] = "";
        changed_value(&keys[i], value, sizeof value);
        snprintf(assignment, sizeof assignment, "%s.%s=%s", keys[i].section,
                 keys[i].key, value);
        int rc = config_set(&c, assignment, err);
        if (rc != 0)
            fprintf(stderr, "\n  %s: %s\n", assignment, err);
        CU_ASSERT_EQUAL(rc, 0);
        CU_ASSERT(memcmp((char *)&c + keys[i].offset, (char *)&dflt + keys[i].offset,
                         8) != 0);
    }
    check_round_trip(&c);
}

static void test_overrides_and_argv(void)
{
    char *dir = testing_tmpdir();
    char *path = write_temp(dir, "r.ini", "[views]\nflip_p = 0.1\nblur_p = 0.2\n"
                                          "[run]\nseed = 5\n");
    char *path2 = write_temp(dir, "s.ini", "[run]\nseed = 6\n");
    char a0[] = "prog", a1[] = "--set", a2[] = "views.flip_p=0.25", a3[] = "pos1",
         a4[] = "--config", a6[] = "--set=run.threads=3", a7[] = "--other",
         a8[] = "x", a10[] = "--", a11[] = "--set", a12[] = "ignored=1";
    char a5[4096], a9[4200];
    snprintf(a5, sizeof a5, "%s", path);
    snprintf(a9, sizeof a9, "--config=%s", path2);
    char *argv[] = {a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, NULL};
    int argc = 13;
    struct config c;
    char err[ERR_LEN] = "";
    config_defaults(&c);
    int rc = config_from_args(&c, &argc, argv, err);
    if (rc != 0)
        fprintf(stderr, "\n  %s\n", err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(c.views.flip_p, 0.25);  /* --set beats the file, though earlier */
    CU_ASSERT_EQUAL(c.views.blur_p, 0.2);
    CU_ASSERT_EQUAL(c.run.seed, 6);         /* later file beats earlier file */
    CU_ASSERT_EQUAL(c.run.threads, 3);
    CU_ASSERT_EQUAL_FATAL(argc, 7);
    const char *left[] = {"prog", "pos1", "--other", "x", "--", "--set", "ignored=1"};
    for (int i = 0; i < 7; i++)
        CU_ASSERT_STRING_EQUAL(argv[i], left[i]);
    CU_ASSERT_PTR_NULL(argv[7]);

    /* errors: argv and c untouched */
    struct config before = c;
    char *bad1[] = {a0, a3, a4, NULL};
    argc = 3;
    CU_ASSERT_EQUAL(config_from_args(&c, &argc, bad1, err), -1);
    CU_ASSERT(contains(err, "--config needs a file name"));
    CU_ASSERT_EQUAL(argc, 3);
    char s1[] = "--set", s2[] = "views.flip_p", s3[] = "--set=views.local_size=100";
    char *bad2[] = {a0, s1, s2, NULL};
    argc = 3;
    CU_ASSERT_EQUAL(config_from_args(&c, &argc, bad2, err), -1);
    CU_ASSERT(contains(err, "expected section.key=value"));
    char *bad3[] = {a0, s3, NULL};
    argc = 2;
    CU_ASSERT_EQUAL(config_from_args(&c, &argc, bad3, err), -1);
    CU_ASSERT(contains(err, "views.local_size = 100 is larger than views.global_size = 28"));
    CU_ASSERT_STRING_EQUAL(bad3[1], "--set=views.local_size=100");
    CU_ASSERT_EQUAL(memcmp(&c, &before, sizeof c), 0);
    char s4[] = "--set=views.global_sise=3";
    char *bad4[] = {a0, s4, NULL};
    argc = 2;
    CU_ASSERT_EQUAL(config_from_args(&c, &argc, bad4, err), -1);
    CU_ASSERT(contains(err, "--set views.global_sise=3: unknown key global_sise "
                            "in [views]; did you mean global_size?"));
    free(path);
    free(path2);
    testing_rmtree(dir);
    free(dir);
}

static void expect_invalid(const char *set1, const char *set2, const char *msg)
{
    struct config c;
    char err[ERR_LEN] = "";
    config_defaults(&c);
    CU_ASSERT_EQUAL(config_set(&c, set1, err), 0);
    if (set2)
        CU_ASSERT_EQUAL(config_set(&c, set2, err), 0);
    CU_ASSERT_EQUAL(config_validate(&c, err), -1);
    CU_ASSERT(contains(err, msg));
}

static void test_cross_key_rules(void)
{
    expect_invalid("views.global_scale_min=0.9", "views.global_scale_max=0.5",
                   "views.global_scale_min = 0.9 is larger than views.global_scale_max = 0.5");
    expect_invalid("views.local_scale_min=0.4", NULL,
                   "views.local_scale_min = 0.4 is larger than views.local_scale_max = 0.3");
    expect_invalid("views.ratio_min=2", NULL, "views.ratio_min = 2 is larger than views.ratio_max");
    expect_invalid("views.blur_sigma_min=3", NULL, "views.blur_sigma_min = 3 is larger");
    expect_invalid("views.local_size=29", NULL, "views.local_size = 29 is larger than "
                                                "views.global_size = 28");
    expect_invalid("views.channels=3", NULL, "views.mean has 1 item but views.channels = 3");
    expect_invalid("views.channels=3", "views.mean=0.5,0.5,0.5",
                   "views.std has 1 item but views.channels = 3");
    expect_invalid("views.channels=2", NULL, "views.channels = 2: must be 1 (gray) or 3 (RGB)");
    expect_invalid("run.broadcast=tcp://127.0.0.1:5555", NULL,
                   "run.endpoint and run.broadcast are both tcp://127.0.0.1:5555");
    expect_invalid("run.endpoint=localhost:5555", NULL, "run.endpoint = localhost:5555: "
                                                        "expected transport://address");
    expect_invalid("run.name=..", NULL, "run.name = ..: must not start with '.'");

    /* validate also re-checks each key's bounds (a program may write fields) */
    struct config c;
    char err[ERR_LEN] = "";
    config_defaults(&c);
    c.views.flip_p = NAN;
    CU_ASSERT_EQUAL(config_validate(&c, err), -1);
    CU_ASSERT(contains(err, "views.flip_p = nan: not a finite number"));
    config_defaults(&c);
    c.views.global_count = 0;
    CU_ASSERT_EQUAL(config_validate(&c, err), -1);
    CU_ASSERT(contains(err, "views.global_count = 0: below the minimum 1"));
}

/* The ViT keys of [model]: defaults, values, bounds and the rule that a
 * preset belongs to its backbone family. */
static void test_vit_model_keys(void)
{
    struct config c;
    char err[ERR_LEN] = "";
    config_defaults(&c);
    CU_ASSERT_EQUAL(c.model.patch, 0);
    CU_ASSERT_EQUAL(c.model.dim, 0);
    CU_ASSERT_EQUAL(c.model.depth, 0);
    CU_ASSERT_EQUAL(c.model.heads, 0);
    CU_ASSERT_DOUBLE_EQUAL(c.model.mlp_ratio, 4.0, 0);
    CU_ASSERT_EQUAL(c.model.embed, CONFIG_EMBED_CLS);
    CU_ASSERT_EQUAL(config_load_string(&c, "[model]\nbackbone = vit\n"
                                       "preset = vit_small\npatch = 8\n"
                                       "dim = 96\ndepth = 6\nheads = 3\n"
                                       "mlp_ratio = 2.5\nembed = cls_mean\n",
                                       "vit", err), 0);
    CU_ASSERT_EQUAL(config_validate(&c, err), 0);
    CU_ASSERT_EQUAL(c.model.backbone, CONFIG_BACKBONE_VIT);
    CU_ASSERT_EQUAL(c.model.preset, CONFIG_PRESET_VIT_SMALL);
    CU_ASSERT(c.model.patch == 8 && c.model.dim == 96 && c.model.depth == 6 &&
              c.model.heads == 3);
    CU_ASSERT_DOUBLE_EQUAL(c.model.mlp_ratio, 2.5, 0);
    CU_ASSERT_EQUAL(c.model.embed, CONFIG_EMBED_CLS_MEAN);
    CU_ASSERT_EQUAL(config_set(&c, "model.embed=mean", err), -1);
    CU_ASSERT(contains(err, "model.embed"));
    CU_ASSERT_EQUAL(config_set(&c, "model.heads=65", err), -1);
    CU_ASSERT(contains(err, "model.heads"));
    CU_ASSERT_EQUAL(config_set(&c, "model.mlp_ratio=0.1", err), -1);
    CU_ASSERT(contains(err, "model.mlp_ratio"));
    expect_invalid("model.preset=vit_tiny", NULL,
                   "model.preset = vit_tiny does not fit model.backbone = resnet");
    expect_invalid("model.backbone=vit", "model.preset=resnet18",
                   "model.preset = resnet18 does not fit model.backbone = vit");
}

static void test_help_lists_every_key(void)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    config_print_help(f);
    CU_ASSERT_EQUAL(fclose(f), 0);
    size_t count;
    const struct config_key *keys = config_keys(&count);
    CU_ASSERT(contains(text, "[run]"));
    CU_ASSERT(contains(text, "[views]"));
    CU_ASSERT(contains(text, "global_size          int 8..1024, default 28"));
    CU_ASSERT(contains(text, "name                 string of 0..64 characters in "
                             "[A-Za-z0-9._-], default \"\""));
    for (size_t i = 0; i < count; i++) {
        char line[128];
        snprintf(line, sizeof line, "\n  %s ", keys[i].key);
        CU_ASSERT(contains(text, line));
        CU_ASSERT(contains(text, keys[i].help));
    }
    free(text);
}

int main(void)
{
    static const struct testing_case cases[] = {
        {"table rows are sound", test_table_rows_are_sound},
        {"defaults", test_defaults},
        {"parse a file", test_parse_file},
        {"errors name line and key", test_errors_name_line_and_key},
        {"bounds of each type", test_bounds_of_each_type},
        {"bad values of each type", test_bad_values_of_each_type},
        {"floats round trip exactly", test_floats_round_trip_exactly},
        {"to_string round trip", test_round_trip},
        {"overrides and argv", test_overrides_and_argv},
        {"cross-key rules", test_cross_key_rules},
        {"vit model keys", test_vit_model_keys},
        {"help lists every key", test_help_lists_every_key},
        {NULL, NULL},
    };
    return testing_run("config", cases);
}
