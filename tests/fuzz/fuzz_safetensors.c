/*
 * fuzz_safetensors.c: libFuzzer target for the safetensors reader
 * (st_open_buffer: the same checks st_open runs on a file). Whatever is
 * accepted must describe tensors inside the buffer whose sizes match their
 * shapes, and st_find must return each tensor by its name; anything else
 * aborts. Rejections must carry a reason.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_safetensors: %s: %s\n", what, detail);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = xmalloc(size + 1);
    if (size)
        memcpy(buf, data, size);
    struct st_file f;
    char err[ERR_LEN] = "";
    if (st_open_buffer(&f, buf, size, "fuzz", err) != 0) {
        if (err[0] == '\0')
            fail("rejected without a reason", "");
        return 0;
    }
    size_t total = 0;
    for (size_t i = 0; i < f.n; i++) {
        const struct st_tensor *t = &f.tensors[i];
        const char *p = t->data;
        if (p < f.buf + 8 + f.header_len || p + t->nbytes > f.buf + f.len)
            fail("tensor data outside the buffer", t->name);
        size_t nb = st_dtype_size(t->dtype);
        for (int d = 0; d < t->ndim; d++)
            nb *= (size_t)t->shape[d];
        if (nb != t->nbytes)
            fail("tensor size differs from its shape", t->name);
        if (st_find(&f, t->name) != t)
            fail("st_find does not return the tensor", t->name);
        total += t->nbytes;
    }
    if (total != f.len - 8 - f.header_len)
        fail("tensors do not tile the data area", "");
    st_close(&f);
    return 0;
}
