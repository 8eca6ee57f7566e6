/*
 * test_json.c: the JSON reader accepts what RFC 8259 allows, rejects what it
 * does not with the byte offset, unescapes strings, bounds nesting, and
 * refuses an object that names a member twice, at any size.
 */
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "testing.h"
#include "util.h"

static struct json *parse(const char *s, char *err)
{
    return json_parse(s, strlen(s), 16, err);
}

static void test_object_members(void)
{
    char err[ERR_LEN];
    struct json *j = parse(" {\"a\": 1.5, \"b\": [1, 2, {\"c\": null}], "
                           "\"s\": \"x\\n\\u00e9\\ud83d\\ude00\", \"t\": true} ", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    CU_ASSERT_EQUAL(j->type, JSON_OBJECT);
    CU_ASSERT_EQUAL(j->len, 4);
    CU_ASSERT_DOUBLE_EQUAL(json_get(j, "a")->number, 1.5, 0);
    const struct json *b = json_get(j, "b");
    CU_ASSERT_EQUAL(b->type, JSON_ARRAY);
    CU_ASSERT_EQUAL(b->len, 3);
    CU_ASSERT_EQUAL(b->child->next->next->child->type, JSON_NULL);
    const struct json *s = json_get(j, "s");
    CU_ASSERT_STRING_EQUAL(s->string, "x\n\xc3\xa9\xf0\x9f\x98\x80");
    CU_ASSERT_EQUAL(s->len, 8);
    CU_ASSERT_EQUAL(json_get(j, "t")->type, JSON_TRUE);
    CU_ASSERT_PTR_NULL(json_get(j, "missing"));
    uint64_t u;
    CU_ASSERT_EQUAL(json_get_u64(json_get(j, "a"), &u), -1);
    json_free(j);
    j = parse("[0, 9007199254740992, -1, 1e3]", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    CU_ASSERT_EQUAL(json_get_u64(j->child, &u), 0);
    CU_ASSERT_EQUAL(u, 0);
    CU_ASSERT_EQUAL(json_get_u64(j->child->next, &u), 0);
    CU_ASSERT_EQUAL(u, 9007199254740992ull);
    CU_ASSERT_EQUAL(json_get_u64(j->child->next->next, &u), -1);
    CU_ASSERT_EQUAL(json_get_u64(j->child->next->next->next, &u), 0);
    CU_ASSERT_EQUAL(u, 1000);
    json_free(j);
}

static void test_rejects_with_offset(void)
{
    static const struct {
        const char *text, *reason;
    } bad[] = {
        {"{\"a\": 1,}", "expected member name"},
        {"[1 2]", "expected ','"},
        {"{\"a\" 1}", "expected ':'"},
        {"\"abc", "unterminated string"},
        {"01", "leading zero"},
        {"[1] x", "trailing characters"},
        {"\"\\ud800\"", "unpaired surrogate"},
        {"\"a\tb\"", "control character"},
        {"nul", "unexpected token"},
        {"", "unexpected end"},
        {"1e999", "bad number"},
        {"\"\\u0000\"", "NUL"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[ERR_LEN] = "";
        struct json *j = parse(bad[i].text, err);
        CU_ASSERT_PTR_NULL(j);
        if (!strstr(err, bad[i].reason) || !strstr(err, "at byte"))
            fprintf(stderr, "\n'%s': got '%s', want '%s'\n", bad[i].text, err,
                    bad[i].reason);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, bad[i].reason));
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "at byte"));
        json_free(j);
    }
}

static void test_depth_limit(void)
{
    char deep[200];
    for (int i = 0; i < 100; i++) {
        deep[i] = '[';
        deep[199 - i] = ']';
    }
    char err[ERR_LEN];
    struct json *j = json_parse(deep, sizeof deep, 16, err);
    CU_ASSERT_PTR_NULL(j);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "nesting too deep"));
    j = json_parse(deep, sizeof deep, 100, err);
    CU_ASSERT_PTR_NOT_NULL(j);
    json_free(j);
    /* the hard cap holds whatever depth the caller asks for */
    size_t n = 2 * (JSON_DEPTH_CAP + 1);
    char *deeper = xmalloc(n);
    memset(deeper, '[', n / 2);
    memset(deeper + n / 2, ']', n / 2);
    j = json_parse(deeper, n, 1 << 30, err);
    CU_ASSERT_PTR_NULL(j);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "nesting too deep"));
    j = json_parse(deeper + 1, n - 2, 1 << 30, err);
    CU_ASSERT_PTR_NOT_NULL(j);
    json_free(j);
    free(deeper);
}

static void test_duplicate_names(void)
{
    static const char *bad[] = {
        "{\"a\": 1, \"b\": 2, \"a\": 3}",
        "{\"x\": {\"k\": 1, \"k\": [2]}}",
        "[{\"\\u0041\": 1, \"A\": 2}]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[ERR_LEN] = "";
        CU_ASSERT_PTR_NULL(parse(bad[i], err));
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "appears twice"));
    }
    char err[ERR_LEN];
    struct json *j = parse("[{\"k\": 1}, {\"k\": {\"k\": 2}}, {\"ka\": 0, \"k\": 3}]", err);
    CU_ASSERT_PTR_NOT_NULL(j);
    json_free(j);
}

/* An object of n members "m<i>", the last one named like member dup (or a
 * fresh name when dup < 0). Caller frees. */
static char *many_members(size_t n, long dup, size_t *len)
{
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    fputc('{', f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s\"m%zu\":%zu", i ? "," : "",
                i == n - 1 && dup >= 0 ? (size_t)dup : i, i);
    fputc('}', f);
    fclose(f);
    return buf;
}

static void test_duplicate_names_at_scale(void)
{
    const size_t n = 200000;
    size_t len;
    char err[ERR_LEN] = "";
    char *text = many_members(n, -1, &len);
    struct json *j = json_parse(text, len, 4, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    CU_ASSERT_EQUAL(j->len, n);
    uint64_t u = 0;
    CU_ASSERT_EQUAL(json_get_u64(json_get(j, "m199999"), &u), 0);
    CU_ASSERT_EQUAL(u, n - 1);
    json_free(j);
    free(text);
    const long dups[] = {0, 123457, (long)n - 2};
    for (size_t k = 0; k < sizeof dups / sizeof dups[0]; k++) {
        char want[64];
        snprintf(want, sizeof want, "'m%ld' appears twice", dups[k]);
        text = many_members(n, dups[k], &len);
        CU_ASSERT_PTR_NULL(json_parse(text, len, 4, err));
        CU_ASSERT_PTR_NOT_NULL(strstr(err, want));
        free(text);
    }
}

/* Node storage is sized by counting ',', '[' and '{': documents made of
 * the smallest possible values must fit it exactly. */
static void test_dense_documents(void)
{
    const char *docs[] = {"[0,0,0,0]", "[[],[],[[]],{}]", "{\"a\":[{},[0]],\"b\":0}",
                          "0", "[]", "\"[,{\""};
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        char err[ERR_LEN];
        struct json *j = parse(docs[i], err);
        CU_ASSERT_PTR_NOT_NULL(j);
        json_free(j);
    }
}

static void test_write_string_roundtrip(void)
{
    const char *s = "q\"b\\n\n\t\x01z";
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    json_write_string(f, s);
    fclose(f);
    char err[ERR_LEN];
    struct json *j = json_parse(buf, n, 4, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    CU_ASSERT_STRING_EQUAL(j->string, s);
    json_free(j);
    free(buf);
}

int main(void)
{
    static const struct testing_case cases[] = {
        {"object members", test_object_members},
        {"rejects with offset", test_rejects_with_offset},
        {"depth limit", test_depth_limit},
        {"duplicate names", test_duplicate_names},
        {"duplicate names at scale", test_duplicate_names_at_scale},
        {"dense documents", test_dense_documents},
        {"write string round trip", test_write_string_roundtrip},
        {NULL, NULL},
    };
    return testing_run("json", cases);
}
