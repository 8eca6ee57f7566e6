/*
 * bench_safetensors.c: time st_open on headers of 10k, 80k and 640k tensor
 * entries (640k entries is about 45 MB of header, under the 64 MiB cap) and
 * print the parse time per entry, so that "header parsing is O(n log n)"
 * is a number: the per-entry time must stay roughly flat as n grows 64x.
 * Run by hand: bench_safetensors [MAX_ENTRIES [DIR]] (DIR default $TMPDIR
 * or /tmp; MAX_ENTRIES skips the larger sizes, e.g. to time a quadratic
 * build without waiting half an hour).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "safetensors.h"
#include "util.h"

/* n one-byte U8 tensors named like a deep model's parameters (long common
 * prefixes make name comparisons do real work). */
static int write_file(const char *path, size_t n, char *err)
{
    struct st_tensor *t = xcalloc(n, sizeof *t);
    char (*names)[64] = xcalloc(n, sizeof *names);
    unsigned char *data = xcalloc(n, 1);
    for (size_t i = 0; i < n; i++) {
        snprintf(names[i], sizeof names[i], "encoder.blocks.%zu.attn.qkv.weight", i);
        t[i] = (struct st_tensor){.name = names[i], .dtype = ST_U8, .ndim = 1,
                                  .shape = {1}, .data = data + i, .nbytes = 1};
    }
    const char *keys[] = {"format"}, *vals[] = {"bench"};
    int rc = st_write(path, t, n, keys, vals, 1, err);
    free(t);
    free(names);
    free(data);
    return rc;
}

int main(int argc, char **argv)
{
    size_t max = argc > 1 ? (size_t)util_parse_long("MAX_ENTRIES", argv[1], 1,
                                                    100000000) : SIZE_MAX;
    const char *dir = argc > 2 ? argv[2] : getenv("TMPDIR");
    if (!dir || !dir[0])
        dir = "/tmp";
    char path[4096], err[ERR_LEN];
    snprintf(path, sizeof path, "%s/bench_safetensors.%ld.safetensors", dir,
             (long)getpid());
    const size_t sizes[] = {10000, 80000, 640000};
    printf("%10s %12s %10s %14s\n", "entries", "header_MB", "open_s", "us_per_entry");
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k];
        if (n > max)
            break;
        if (write_file(path, n, err) != 0)
            die("%s", err);
        struct st_file f;
        double t0 = util_time_mono();
        if (st_open(&f, path, err) != 0)
            die("%s", err);
        double dt = util_time_mono() - t0;
        CHECK(f.n == n);
        /* the header length is the file's first 8 bytes, little-endian */
        uint64_t hlen = 0;
        for (int i = 0; i < 8; i++)
            hlen |= (uint64_t)(unsigned char)f.buf[i] << (8 * i);
        st_close(&f);
        printf("%10zu %12.1f %10.3f %14.3f\n", n, (double)hlen / 1e6, dt,
               dt / (double)n * 1e6);
        fflush(stdout);
    }
    unlink(path);
    return 0;
}
