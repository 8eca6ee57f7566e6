/*
 * dataset_shards.c: a dataset as a listing (dataset.h): the index file a
 * partial copy carries, and tar shards read with libarchive. One pass over
 * each shard's headers (the data skipped) finds its members; a member is
 * read back by opening the shard at its header's offset, where a tar
 * stream may start.
 */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataset.h"
#include "util.h"

#define INDEX_MAGIC "lejepa-index 1"
/* A member larger than this is not an image a loader should buffer. */
#define MEMBER_MAX ((int64_t)1 << 30)

/* The entries of a listing and the paths they own. */
struct listing {
    struct dataset_entry *e;
    size_t n, cap;
};

static void listing_add(struct listing *l, const char *path, int32_t shard,
                        uint64_t offset, int held)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 1024;
        l->e = xrealloc(l->e, l->cap * sizeof *l->e);
    }
    l->e[l->n++] = (struct dataset_entry){xstrdup(path), shard, offset, held};
}

static void listing_free(struct listing *l)
{
    for (size_t i = 0; i < l->n; i++)
        free((char *)l->e[i].path);
    free(l->e);
    memset(l, 0, sizeof *l);
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const struct dataset_entry *)a)->path,
                  ((const struct dataset_entry *)b)->path);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int is_tar_name(const char *name)
{
    size_t n = strlen(name);
    return name[0] != '.' && n > 4 && strcmp(name + n - 4, ".tar") == 0;
}

/* The shard's number in d->shards, added when new. */
static int32_t shard_id(struct dataset *d, const char *name)
{
    for (size_t i = 0; i < d->n_shards; i++)
        if (strcmp(d->shards[i], name) == 0)
            return (int32_t)i;
    d->shards = xrealloc(d->shards, (d->n_shards + 1) * sizeof *d->shards);
    d->shards[d->n_shards] = xstrdup(name);
    return (int32_t)d->n_shards++;
}

/* A member name as a path relative to the root: no "./" in front. */
static const char *member_path(const char *name)
{
    while (name && name[0] == '.' && name[1] == '/')
        name += 2;
    return name ? name : "";
}

/* A relative path inside the root: not empty or absolute, no empty, "."
 * or ".." component (an index or a shard must not reach outside). */
static int safe_path(const char *p)
{
    if (!p[0] || p[0] == '/')
        return 0;
    for (const char *c = p;;) {
        const char *slash = strchr(c, '/');
        size_t n = slash ? (size_t)(slash - c) : strlen(c);
        if (n == 0 || (n == 1 && c[0] == '.') ||
            (n == 2 && c[0] == '.' && c[1] == '.'))
            return 0;
        if (!slash)
            return 1;
        c = slash + 1;
    }
}

/* Calls fn for each regular member of the shard (its path and header
 * offset). 0, or -1 with err naming the shard. */
static int scan_shard(const char *path,
                      int (*fn)(void *ctx, const char *member, uint64_t offset,
                                char *err),
                      void *ctx, char *err)
{
    struct archive *a = archive_read_new();
    archive_read_support_format_tar(a);
    int rc = 0;
    if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK) {
        rc = errf(err, "%s: %s", path, archive_error_string(a));
        goto done;
    }
    for (;;) {
        struct archive_entry *ent;
        int r = archive_read_next_header(a, &ent);
        if (r == ARCHIVE_EOF)
            break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            rc = errf(err, "%s: not a readable tar: %s", path,
                      archive_error_string(a));
            break;
        }
        uint64_t offset = (uint64_t)archive_read_header_position(a);
        const char *name = member_path(archive_entry_pathname(ent));
        if (archive_entry_filetype(ent) == AE_IFREG && !safe_path(name)) {
            rc = errf(err, "%s: member '%s' is not a path inside the "
                      "dataset", path, name);
            break;
        }
        if (archive_entry_filetype(ent) == AE_IFREG &&
            (rc = fn(ctx, name, offset, err)) != 0)
            break;
        if (archive_read_data_skip(a) != ARCHIVE_OK) {
            rc = errf(err, "%s: %s", path, archive_error_string(a));
            break;
        }
    }
done:
    archive_read_free(a);
    return rc;
}

/* Shards without an index: every member of every shard, all held. */
struct all_ctx {
    struct listing *l;
    int32_t shard;
};

static int add_member(void *ctx, const char *member, uint64_t offset,
                      char *err)
{
    (void)err;
    struct all_ctx *c = ctx;
    listing_add(c->l, member, c->shard, offset, 1);
    return 0;
}

/* With an index: a present shard's members fill in their entries. */
struct match_ctx {
    struct listing *l; /* sorted by path */
    int32_t shard;
    const char *shard_path;
    size_t found;
};

static int match_member(void *ctx, const char *member, uint64_t offset,
                        char *err)
{
    struct match_ctx *c = ctx;
    struct dataset_entry key = {.path = member};
    struct dataset_entry *e =
        bsearch(&key, c->l->e, c->l->n, sizeof key, cmp_entry);
    if (!e || e->shard != c->shard)
        return errf(err, "%s: member '%s' is not in the index as one of this "
                    "shard's (a shard of another dataset?)", c->shard_path,
                    member);
    if (e->held)
        return errf(err, "%s: member '%s' appears twice", c->shard_path,
                    member);
    c->found++;
    e->offset = offset;
    e->held = 1;
    return 0;
}

/* Reads root/DATASET_INDEX into l: plain files held when present, shard
 * members not yet (match_member marks them). */
static int read_index(struct dataset *d, const char *path, struct listing *l,
                      char *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return errf(err, "%s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    long no = 0;
    int rc = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) >= 0) {
        no++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (no == 1) {
            if (strcmp(line, INDEX_MAGIC) != 0) {
                rc = errf(err, "%s: not a dataset index (its first line is "
                          "not '" INDEX_MAGIC "')", path);
                break;
            }
            continue;
        }
        if (len == 0)
            continue;
        if (strncmp(line, "\tclass\t", 7) == 0) {
            /* a class of the folder, listed even when empty */
            const char *name = line + 7;
            if (!name[0] || strchr(name, '/') || strchr(name, '\t') ||
                !safe_path(name)) {
                rc = errf(err, "%s:%ld: bad class name '%s'", path, no, name);
                break;
            }
            d->classes =
                xrealloc(d->classes, (d->n_classes + 1) * sizeof *d->classes);
            d->classes[d->n_classes++] = xstrdup(name);
            continue;
        }
        char *tab = strchr(line, '\t');
        if (!tab || tab == line || strchr(tab + 1, '\t') || !tab[1]) {
            rc = errf(err, "%s:%ld: expected '<path>\\t<shard or ->'", path,
                      no);
            break;
        }
        *tab = '\0';
        const char *shard = tab + 1;
        if (!safe_path(line)) {
            rc = errf(err, "%s:%ld: '%s' is not a path inside the dataset",
                      path, no, line);
            break;
        }
        if (strcmp(shard, "-") == 0) {
            struct stat st;
            char file[8192];
            snprintf(file, sizeof file, "%s/%s", d->root, line);
            listing_add(l, line, -1, 0,
                        stat(file, &st) == 0 && S_ISREG(st.st_mode));
        } else if (!is_tar_name(shard) || strchr(shard, '/')) {
            rc = errf(err, "%s:%ld: shard '%s' is not a .tar file name", path,
                      no, shard);
            break;
        } else {
            listing_add(l, line, shard_id(d, shard), 0, 0);
        }
    }
    free(line);
    fclose(f);
    if (rc == 0 && no == 0)
        rc = errf(err, "%s: empty", path);
    return rc;
}

/* The *.tar files directly in root, sorted, into d->shards. */
static int list_shards(struct dataset *d, int *has_train, char *err)
{
    DIR *dir = opendir(d->root);
    if (!dir)
        return errf(err, "%s: cannot open: %s", d->root, strerror(errno));
    struct dirent *e;
    while ((e = readdir(dir)))
        if (strcmp(e->d_name, "train") == 0)
            *has_train = 1;
        else if (is_tar_name(e->d_name))
            shard_id(d, e->d_name);
    closedir(dir);
    qsort(d->shards, d->n_shards, sizeof *d->shards, cmp_str);
    return 0;
}

int dataset_open_listing(struct dataset *d, char *err)
{
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", d->root, DATASET_INDEX);
    struct listing l = {0};
    int rc = 0;
    if (access(path, F_OK) == 0) {
        if ((rc = read_index(d, path, &l, err)) != 0)
            goto done;
        qsort(l.e, l.n, sizeof *l.e, cmp_entry);
        for (size_t i = 1; i < l.n; i++)
            if (strcmp(l.e[i - 1].path, l.e[i].path) == 0) {
                rc = errf(err, "%s: '%s' listed twice", path, l.e[i].path);
                goto done;
            }
        for (size_t s = 0; s < d->n_shards; s++) {
            char sp[8192];
            snprintf(sp, sizeof sp, "%s/%s", d->root, d->shards[s]);
            if (access(sp, F_OK) != 0)
                continue; /* not in this copy: its samples are not held */
            struct match_ctx c = {&l, (int32_t)s, sp, 0};
            if ((rc = scan_shard(sp, match_member, &c, err)) != 0)
                goto done;
            size_t listed = 0;
            for (size_t i = 0; i < l.n; i++)
                listed += l.e[i].shard == (int32_t)s;
            if (c.found != listed) {
                rc = errf(err, "%s: has %zu of the %zu members the index "
                          "lists for it (truncated, or another version?)",
                          sp, c.found, listed);
                goto done;
            }
        }
    } else {
        int has_train = 0;
        if ((rc = list_shards(d, &has_train, err)) != 0)
            goto done;
        if (d->n_shards == 0 || has_train)
            goto done; /* a plain folder (shards beside train/ are ignored) */
        for (size_t s = 0; s < d->n_shards; s++) {
            char sp[8192];
            snprintf(sp, sizeof sp, "%s/%s", d->root, d->shards[s]);
            struct all_ctx c = {&l, (int32_t)s};
            if ((rc = scan_shard(sp, add_member, &c, err)) != 0)
                goto done;
        }
        qsort(l.e, l.n, sizeof *l.e, cmp_entry);
        for (size_t i = 1; i < l.n; i++)
            if (strcmp(l.e[i - 1].path, l.e[i].path) == 0) {
                rc = errf(err, "%s: '%s' appears twice in its shards",
                          d->root, l.e[i].path);
                goto done;
            }
    }
    rc = dataset_build(d, l.e, l.n, err);
    if (rc == 0)
        rc = 1;
done:
    listing_free(&l);
    return rc;
}

int dataset_read_member(const char *shard_path, uint64_t offset, void **buf,
                        size_t *len, char *name, size_t cap, char *err)
{
    *buf = NULL;
    *len = 0;
    int fd = open(shard_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errf(err, "%s: %s", shard_path, strerror(errno));
    if (lseek(fd, (off_t)offset, SEEK_SET) != (off_t)offset) {
        close(fd);
        return errf(err, "%s: cannot seek to %llu: %s", shard_path,
                    (unsigned long long)offset, strerror(errno));
    }
    struct archive *a = archive_read_new();
    archive_read_support_format_tar(a);
    struct archive_entry *ent;
    int rc = -1;
    /* ARCHIVE_WARN: a name this locale cannot convert (non-ASCII in the C
     * locale); the bytes are what matter */
    if (archive_read_open_fd(a, fd, 1 << 16) != ARCHIVE_OK ||
        archive_read_next_header(a, &ent) < ARCHIVE_WARN) {
        errf(err, "%s at %llu: no tar member: %s", shard_path,
             (unsigned long long)offset, archive_error_string(a));
        goto done;
    }
    snprintf(name, cap, "%s:%s", shard_path,
             member_path(archive_entry_pathname(ent)));
    int64_t size = archive_entry_size(ent);
    if (archive_entry_filetype(ent) != AE_IFREG || size < 0 ||
        size > MEMBER_MAX) {
        /* the member itself: no other copy of it will do better */
        errf(err, "%s: not a regular member of at most 1 GiB", name);
        rc = -2;
        goto done;
    }
    uint8_t *b = xmalloc(size ? (size_t)size : 1);
    size_t got = 0;
    while (got < (size_t)size) {
        la_ssize_t r = archive_read_data(a, b + got, (size_t)size - got);
        if (r <= 0) {
            errf(err, "%s: truncated (%zu of %lld bytes): %s", name, got,
                 (long long)size, r < 0 ? archive_error_string(a) : "end");
            free(b);
            goto done;
        }
        got += (size_t)r;
    }
    *buf = b;
    *len = got;
    rc = 0;
done:
    archive_read_free(a);
    close(fd);
    return rc;
}

int dataset_write_index(const struct dataset *d, const char *root, char *err)
{
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    fprintf(m, INDEX_MAGIC "\n");
    /* the classes first, so empty class folders count as in the folder */
    for (size_t c = 0; c < d->n_classes; c++)
        fprintf(m, "\tclass\t%s\n", d->classes[c]);
    int rc = 0;
    for (int s = 0; s < DATASET_N_SPLITS && rc == 0; s++) {
        const struct dataset_split *sp = &d->split[s];
        for (size_t i = 0; i < sp->n; i++) {
            if (strpbrk(sp->paths[i], "\t\n\r")) {
                rc = errf(err, "'%s': a tab or newline in a file name cannot "
                          "go into an index", sp->paths[i]);
                break;
            }
            int32_t sh = sp->shard ? sp->shard[i] : -1;
            fprintf(m, "%s\t%s\n", sp->paths[i], sh >= 0 ? d->shards[sh] : "-");
        }
    }
    fclose(m);
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", root, DATASET_INDEX);
    if (rc == 0)
        rc = util_write_file_atomic(path, text, len, err);
    free(text);
    return rc;
}
