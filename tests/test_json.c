/*
 * test_json.c: the JSON reader accepts what RFC 8259 allows, rejects what it
 * does not with the byte offset, unescapes strings, and bounds nesting.
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
        {"write string round trip", test_write_string_roundtrip},
        {NULL, NULL},
    };
    return testing_run("json", cases);
}
