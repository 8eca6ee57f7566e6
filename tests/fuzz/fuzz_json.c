/*
 * fuzz_json.c: libFuzzer target for json_parse. Whatever is accepted must
 * hold together (counts match the children, no object names a member
 * twice, json_get finds each member itself) and survive a round trip:
 * written back as JSON and parsed again it gives the same tree. Anything
 * else aborts, which the fuzzer reports. Rejections must carry a reason.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_json: %s: %s\n", what, detail);
    abort();
}

static void check_tree(const struct json *j)
{
    if (j->type != JSON_ARRAY && j->type != JSON_OBJECT)
        return;
    size_t n = 0;
    for (const struct json *c = j->child; c; c = c->next, n++) {
        if ((j->type == JSON_OBJECT) != (c->key != NULL))
            fail("member name present iff parent is an object", "");
        if (j->type == JSON_OBJECT && json_get(j, c->key) != c)
            fail("json_get does not find the member itself", c->key);
        check_tree(c);
    }
    if (n != j->len)
        fail("len differs from the number of children", "");
}

static void write_tree(FILE *out, const struct json *j)
{
    switch (j->type) {
    case JSON_NULL: fputs("null", out); break;
    case JSON_FALSE: fputs("false", out); break;
    case JSON_TRUE: fputs("true", out); break;
    case JSON_NUMBER: fprintf(out, "%.17g", j->number); break;
    case JSON_STRING: json_write_string(out, j->string); break;
    case JSON_ARRAY:
    case JSON_OBJECT:
        fputc(j->type == JSON_ARRAY ? '[' : '{', out);
        for (const struct json *c = j->child; c; c = c->next) {
            if (c != j->child)
                fputc(',', out);
            if (c->key) {
                json_write_string(out, c->key);
                fputc(':', out);
            }
            write_tree(out, c);
        }
        fputc(j->type == JSON_ARRAY ? ']' : '}', out);
        break;
    }
}

static int same_tree(const struct json *a, const struct json *b)
{
    if (a->type != b->type || a->len != b->len)
        return 0;
    if ((a->key == NULL) != (b->key == NULL) || (a->key && strcmp(a->key, b->key)))
        return 0;
    if (a->type == JSON_NUMBER && a->number != b->number)
        return 0;
    if (a->type == JSON_STRING && memcmp(a->string, b->string, a->len + 1) != 0)
        return 0;
    const struct json *x = a->child, *y = b->child;
    for (; x && y; x = x->next, y = y->next)
        if (!same_tree(x, y))
            return 0;
    return x == NULL && y == NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[ERR_LEN] = "";
    /* a small depth so "nesting too deep" is reached, and the hard cap */
    const int depths[] = {6, 1 << 20};
    for (int d = 0; d < 2; d++) {
        struct json *j = json_parse((const char *)data, size, depths[d], err);
        if (!j) {
            if (err[0] == '\0')
                fail("rejected without a reason", "");
            continue;
        }
        check_tree(j);
        char *text = NULL;
        size_t len = 0;
        FILE *out = open_memstream(&text, &len);
        CHECK(out != NULL);
        write_tree(out, j);
        fclose(out);
        struct json *again = json_parse(text, len, depths[d], err);
        if (!again)
            fail("written tree does not parse", err);
        if (!same_tree(j, again))
            fail("round trip changed the tree", text);
        json_free(again);
        json_free(j);
        free(text);
    }
    return 0;
}
