/*
 * lejepa_shard.c: `lejepa shard DIR --out OUT [--per-shard N]` writes a
 * dataset as uncompressed tar shards (libarchive, pax format) plus the
 * index a partial copy needs (proto/dataset.h), and `lejepa index DIR`
 * writes the index of a folder in place. Members are named by their path
 * in the folder and go in the dataset's order (train, then val; each
 * sorted), so the shards have the folder's samples, order and fingerprint;
 * a remote loader then needs only the shards it is to serve.
 */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "lejepa_cli.h"
#include "util.h"

#define SHARD_DEFAULT_PER 10000

static void usage(FILE *out)
{
    fprintf(out,
        "usage: lejepa shard DIR --out OUT [--per-shard N]\n"
        "       lejepa index DIR\n"
        "\n"
        "shard: writes the dataset at DIR (any layout of proto/dataset.h) as\n"
        "OUT/shard-NNNNNN.tar, N samples each (default %d), members named by\n"
        "their path in DIR, and OUT/" DATASET_INDEX " listing every sample's\n"
        "shard. OUT then trains like DIR (same samples, order, fingerprint),\n"
        "and a copy of OUT with only some shards (plus the index) is a partial\n"
        "copy: its loader serves the samples it has.\n"
        "\n"
        "index: writes DIR/" DATASET_INDEX " for a folder, so that a copy of\n"
        "it with files missing still names the whole dataset.\n"
        "\n"
        "Exit status: 0 written, 1 a write failed, 2 bad arguments or dataset.\n",
        SHARD_DEFAULT_PER);
}

/* Writes the file at path as the member name of the open archive. */
static int add_member(struct archive *a, const char *path, const char *name,
                      char *err)
{
    size_t len;
    char *bytes = util_read_file(path, &len, err);
    if (!bytes)
        return -1;
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, name);
    archive_entry_set_size(e, (la_int64_t)len);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_mtime(e, 0, 0); /* the same bytes from the same folder */
    int rc = 0;
    /* ARCHIVE_WARN: a name this locale cannot translate; pax stores its
     * bytes as they are (hdrcharset=BINARY), which is what readers match */
    if (archive_write_header(a, e) < ARCHIVE_WARN ||
        archive_write_data(a, bytes, len) != (la_ssize_t)len)
        rc = errf(err, "%s: %s", name, archive_error_string(a));
    archive_entry_free(e);
    free(bytes);
    return rc;
}

static int write_shards(struct dataset *d, const char *out, long per,
                        char *err)
{
    size_t total = d->split[DATASET_TRAIN].n + d->split[DATASET_VAL].n;
    size_t n_shards = (total + (size_t)per - 1) / (size_t)per;
    struct archive *a = NULL;
    char shard_path[8192], name[64];
    size_t k = 0;
    int rc = 0;
    d->shards = xcalloc(n_shards ? n_shards : 1, sizeof *d->shards);
    d->n_shards = n_shards;
    for (int s = 0; s < DATASET_N_SPLITS && rc == 0; s++) {
        struct dataset_split *sp = &d->split[s];
        free(sp->shard);
        sp->shard = xmalloc((sp->n ? sp->n : 1) * sizeof *sp->shard);
        for (size_t i = 0; i < sp->n && rc == 0; i++, k++) {
            if (k % (size_t)per == 0) {
                if (a && archive_write_close(a) != ARCHIVE_OK)
                    rc = errf(err, "%s: %s", shard_path,
                              archive_error_string(a));
                if (a)
                    archive_write_free(a);
                snprintf(name, sizeof name, "shard-%06zu.tar", k / (size_t)per);
                d->shards[k / (size_t)per] = xstrdup(name);
                snprintf(shard_path, sizeof shard_path, "%s/%s", out, name);
                a = archive_write_new();
                archive_write_set_format_pax_restricted(a);
                if (rc == 0 &&
                    archive_write_open_filename(a, shard_path) != ARCHIVE_OK)
                    rc = errf(err, "%s: %s", shard_path,
                              archive_error_string(a));
                if (rc == 0)
                    printf("lejepa shard: writing %s\n", shard_path);
            }
            char src[8192];
            sp->shard[i] = (int32_t)(k / (size_t)per);
            if (rc == 0 &&
                dataset_sample_path(d, s, i, src, sizeof src) == 0)
                rc = add_member(a, src, sp->paths[i], err);
        }
    }
    if (a) {
        if (archive_write_close(a) != ARCHIVE_OK && rc == 0)
            rc = errf(err, "%s: %s", shard_path, archive_error_string(a));
        archive_write_free(a);
    }
    return rc;
}

int lejepa_shard_main(int argc, char **argv, bool index_only)
{
    static const struct option longs[] = {
        {"out", required_argument, NULL, 'o'},
        {"per-shard", required_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *out = NULL;
    long per = SHARD_DEFAULT_PER;
    int c;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'n':
            per = strtol(optarg, NULL, 10);
            if (per < 1) {
                fprintf(stderr, "lejepa shard: --per-shard %s: expected a "
                        "count of at least 1\n", optarg);
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    const char *prog = index_only ? "lejepa index" : "lejepa shard";
    if (optind + 1 != argc || (!index_only && !out)) {
        fprintf(stderr, "%s: %s\n", prog,
                optind + 1 != argc ? "expected one dataset folder"
                                   : "--out OUT is required");
        usage(stderr);
        return 2;
    }
    char err[ERR_LEN];
    struct dataset d;
    if (dataset_open(&d, argv[optind], err) != 0) {
        fprintf(stderr, "%s: %s\n", prog, err);
        return 2;
    }
    if (d.held || d.n_shards) {
        fprintf(stderr, "%s: %s is already sharded or indexed; give the "
                "folder of files\n", prog, argv[optind]);
        dataset_free(&d);
        return 2;
    }
    int rc = 0;
    if (!index_only && util_mkdir_p(out, err) != 0)
        rc = -1;
    if (rc == 0 && !index_only)
        rc = write_shards(&d, out, per, err);
    if (rc == 0)
        rc = dataset_write_index(&d, index_only ? argv[optind] : out, err);
    if (rc != 0) {
        fprintf(stderr, "%s: %s\n", prog, err);
    } else {
        char fp[17];
        dataset_format_fingerprint(d.fingerprint, fp);
        printf("%s: %zu samples%s%s, fingerprint %s, index %s/" DATASET_INDEX
               "\n", prog,
               d.split[DATASET_TRAIN].n + d.split[DATASET_VAL].n,
               index_only ? "" : " in shards of at most ",
               index_only ? "" : (snprintf(err, sizeof err, "%ld", per), err),
               fp, index_only ? argv[optind] : out);
    }
    dataset_free(&d);
    return rc == 0 ? 0 : 1;
}
