/*
 * dataset.c: builds the ImageFolder index described in dataset.h: one readdir
 * walk per split (d_type decides files from folders; stat only where the
 * file system does not say, or for symlinks), then one qsort of the relative
 * paths. It never opens an image: decoding belongs to the loader.
 */
#include "dataset.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

#define DATASET_PATH_MAX 4096
#define DATASET_HINT "expected DIR/train/<class>/<image> (labelled), " \
    "DIR/train/<image> or DIR/<image> (unlabelled); " \
    "`lejepa-prep fashion-mnist --out DIR` makes the default dataset"

/* Extensions of the formats Debian's libvips 8.14 loads (the ImageMagick
 * loader adds bmp); deliberately modest: no pdf, csv, matrix or raw. */
static const char *const image_exts[] = {
    "png", "jpg", "jpeg", "jpe", "webp", "tif", "tiff", "gif", "bmp",
    "pbm", "pgm", "ppm", "pnm", "pfm", "hdr", "exr", "heic", "heif", "avif",
    "jp2", "j2k", "jxl", "fits", "fit", "svg",
};

static const char *const split_names[DATASET_N_SPLITS] = {"train", "val"};

/* One split's walk: relative paths appended to a growing pool (as offsets,
 * since the pool moves), with their labels. */
struct walk_entry {
    size_t off;
    int32_t label;
    int32_t shard;   /* -1: a plain file */
    uint64_t offset; /* with a shard: the member's tar header offset */
    uint8_t held;
};

struct walk {
    int split;
    char *pool;
    size_t pool_len, pool_cap;
    struct walk_entry *ents;
    size_t n, cap;
    size_t skipped;
    int sharded;                  /* some entry lives in a shard */
    char rel[DATASET_PATH_MAX];   /* path relative to root of the folder walked */
    size_t rel_len;
};

const char *dataset_split_name(int split)
{
    return split >= 0 && split < DATASET_N_SPLITS ? split_names[split] : "?";
}

int dataset_split_parse(const char *name)
{
    for (int s = 0; s < DATASET_N_SPLITS; s++)
        if (strcmp(name, split_names[s]) == 0)
            return s;
    return -1;
}

int dataset_is_image_name(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name)
        return 0;
    for (size_t i = 0; i < sizeof image_exts / sizeof image_exts[0]; i++)
        if (strcasecmp(dot + 1, image_exts[i]) == 0)
            return 1;
    return 0;
}

void dataset_format_fingerprint(uint64_t fingerprint, char out[17])
{
    snprintf(out, 17, "%016llx", (unsigned long long)fingerprint);
}

/* Appends "/name" to w->rel ("name" to an empty one); -1 with err if it
 * would not fit. */
static int rel_push(struct walk *w, const char *name, size_t *saved, char *err)
{
    size_t n = strlen(name);
    *saved = w->rel_len;
    if (w->rel_len + 1 + n + 1 > sizeof w->rel)
        return errf(err, "%s/%s: path too long", w->rel, name);
    if (w->rel_len > 0) /* at the root of an unlabelled folder: no slash */
        w->rel[w->rel_len++] = '/';
    memcpy(w->rel + w->rel_len, name, n + 1);
    w->rel_len += n;
    return 0;
}

static void rel_pop(struct walk *w, size_t saved)
{
    w->rel_len = saved;
    w->rel[saved] = '\0';
}

/* Appends w->rel: a plain file this copy holds, or (walk_add_entry) a
 * shard member or an index entry. */
static void walk_add_entry(struct walk *w, int32_t label, int32_t shard,
                           uint64_t offset, int held)
{
    size_t need = w->rel_len + 1;
    if (w->pool_len + need > w->pool_cap) {
        w->pool_cap = w->pool_cap ? w->pool_cap * 2 : 1 << 16;
        while (w->pool_len + need > w->pool_cap)
            w->pool_cap *= 2;
        w->pool = xrealloc(w->pool, w->pool_cap);
    }
    if (w->n == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 1024;
        w->ents = xrealloc(w->ents, w->cap * sizeof *w->ents);
    }
    memcpy(w->pool + w->pool_len, w->rel, need);
    w->ents[w->n] = (struct walk_entry){w->pool_len, label, shard, offset,
                                        (uint8_t)(held != 0)};
    w->sharded |= shard >= 0;
    w->n++;
    w->pool_len += need;
}

static void walk_add(struct walk *w, int32_t label)
{
    walk_add_entry(w, label, -1, 0, 1);
}

/* Kind of a directory entry: 'd' folder, 'f' regular file, 'o' other or a
 * dangling symlink. */
static char entry_kind(int dir_fd, const struct dirent *e)
{
    if (e->d_type == DT_DIR)
        return 'd';
    if (e->d_type == DT_REG)
        return 'f';
    if (e->d_type != DT_UNKNOWN && e->d_type != DT_LNK)
        return 'o';
    struct stat st;
    if (fstatat(dir_fd, e->d_name, &st, 0) != 0)
        return 'o';
    return S_ISDIR(st.st_mode) ? 'd' : S_ISREG(st.st_mode) ? 'f' : 'o';
}

/* Adds every image below the folder w->rel (opened as fd, which this
 * function closes) with the given label. depth 0 is the class folder. */
static int walk_class_dir(struct walk *w, const char *root, int fd,
                          int32_t label, int depth, char *err)
{
    DIR *dir = fdopendir(fd);
    if (!dir) {
        close(fd);
        return errf(err, "%s/%s: cannot read: %s", root, w->rel,
                    strerror(errno));
    }
    int rc = 0;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(dir);
        if (!e) {
            if (errno != 0)
                rc = errf(err, "%s/%s: cannot read: %s", root, w->rel,
                          strerror(errno));
            break;
        }
        if (e->d_name[0] == '.')
            continue;
        char kind = entry_kind(dirfd(dir), e);
        if (kind == 'o' || (kind == 'f' && !dataset_is_image_name(e->d_name))) {
            w->skipped++;
            continue;
        }
        size_t saved;
        if ((rc = rel_push(w, e->d_name, &saved, err)) != 0)
            break;
        if (kind == 'f') {
            walk_add(w, label);
        } else if (depth >= DATASET_MAX_DEPTH) {
            rc = errf(err, "%s/%s: folders nested more than %d levels below "
                      "the class folder (a symlink loop?)", root, w->rel,
                      DATASET_MAX_DEPTH);
        } else {
            int sub = openat(dirfd(dir), e->d_name, O_RDONLY | O_DIRECTORY);
            if (sub < 0)
                rc = errf(err, "%s/%s: cannot open: %s", root, w->rel,
                          strerror(errno));
            else
                rc = walk_class_dir(w, root, sub, label, depth + 1, err);
        }
        rel_pop(w, saved);
        if (rc != 0)
            break;
    }
    closedir(dir);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lists the class folders of root/train into d->classes (sorted) and
 * counts the images directly in train/ (*images); other files are counted
 * as skipped. */
static int list_classes(struct dataset *d, DIR *dir, struct walk *w,
                        size_t *images, char *err)
{
    size_t cap = 0;
    *images = 0;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(dir);
        if (!e) {
            if (errno != 0)
                return errf(err, "%s/train: cannot read: %s", d->root,
                            strerror(errno));
            break;
        }
        if (e->d_name[0] == '.')
            continue;
        char kind = entry_kind(dirfd(dir), e);
        if (kind != 'd') {
            if (kind == 'f' && dataset_is_image_name(e->d_name))
                (*images)++;
            else
                w->skipped++;
            continue;
        }
        if (d->n_classes == cap) {
            cap = cap ? cap * 2 : 64;
            d->classes = xrealloc(d->classes, cap * sizeof *d->classes);
        }
        d->classes[d->n_classes++] = xstrdup(e->d_name);
    }
    if (d->n_classes > (size_t)INT32_MAX)
        return errf(err, "%s/train: too many classes", d->root);
    qsort(d->classes, d->n_classes, sizeof *d->classes, cmp_str);
    return 0;
}

/* Walks one split folder (already opened as dir). For train the classes
 * are listed first: images directly in train/ and no class folders make
 * the dataset unlabelled (beside class folders they are skipped), and val/
 * is then walked whole with label -1; in a labelled dataset each val folder
 * must name a known class. */
static int walk_split(struct dataset *d, struct walk *w, DIR *dir, char *err)
{
    if (w->split == DATASET_TRAIN) {
        size_t images;
        int rc = list_classes(d, dir, w, &images, err);
        if (rc != 0)
            return rc;
        /* beside class folders, a stray image is skipped, as any file */
        if (d->n_classes > 0)
            w->skipped += images;
        d->unlabelled = images > 0 && d->n_classes == 0;
        rewinddir(dir);
    }
    if (d->unlabelled) {
        /* the split folder is the one "class" -1; walk_class_dir closes
         * the descriptor it is given, so hand it a copy */
        int fd = dup(dirfd(dir));
        if (fd < 0)
            return errf(err, "%s/%s: %s", d->root, w->rel, strerror(errno));
        return walk_class_dir(w, d->root, fd, -1, 0, err);
    }
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(dir);
        if (!e) {
            if (errno != 0)
                return errf(err, "%s/%s: cannot read: %s", d->root, w->rel,
                            strerror(errno));
            return 0;
        }
        if (e->d_name[0] == '.' || entry_kind(dirfd(dir), e) != 'd') {
            if (w->split == DATASET_VAL && e->d_name[0] != '.')
                w->skipped++;   /* train counted these in list_classes */
            continue;
        }
        const char *name = e->d_name;
        char **hit = bsearch(&name, d->classes, d->n_classes,
                             sizeof *d->classes, cmp_str);
        if (!hit)
            return errf(err, "%s/%s/%s: class '%s' is not among the %zu "
                        "classes of %s/train", d->root, w->rel, name, name,
                        d->n_classes, d->root);
        size_t saved;
        if (rel_push(w, name, &saved, err) != 0)
            return -1;
        int fd = openat(dirfd(dir), name, O_RDONLY | O_DIRECTORY);
        if (fd < 0)
            return errf(err, "%s/%s: cannot open class folder: %s", d->root,
                        w->rel, strerror(errno));
        int rc = walk_class_dir(w, d->root, fd, (int32_t)(hit - d->classes),
                                0, err);
        rel_pop(w, saved);
        if (rc != 0)
            return rc;
    }
}

struct sort_entry {
    const char *path;
    const struct walk_entry *e;
};

static int cmp_sort_entry(const void *a, const void *b)
{
    return strcmp(((const struct sort_entry *)a)->path,
                  ((const struct sort_entry *)b)->path);
}

/* Moves a finished walk into s, sorted by relative path. */
static void split_take(struct dataset_split *s, struct walk *w)
{
    struct sort_entry *tmp = xmalloc((w->n ? w->n : 1) * sizeof *tmp);
    for (size_t i = 0; i < w->n; i++) {
        tmp[i].path = w->pool + w->ents[i].off;
        tmp[i].e = &w->ents[i];
    }
    qsort(tmp, w->n, sizeof *tmp, cmp_sort_entry);
    s->n = w->n;
    s->skipped = w->skipped;
    s->pool_ = w->pool;
    size_t m = w->n ? w->n : 1;
    s->paths = xmalloc(m * sizeof *s->paths);
    s->labels = xmalloc(m * sizeof *s->labels);
    s->held_ = xmalloc(m);
    if (w->sharded) {
        s->shard = xmalloc(m * sizeof *s->shard);
        s->offset = xmalloc(m * sizeof *s->offset);
    }
    for (size_t i = 0; i < w->n; i++) {
        s->paths[i] = (char *)tmp[i].path;
        s->labels[i] = tmp[i].e->label;
        s->held_[i] = tmp[i].e->held;
        if (w->sharded) {
            s->shard[i] = tmp[i].e->shard;
            s->offset[i] = tmp[i].e->offset;
        }
    }
    free(tmp);
    free(w->ents);
    w->pool = NULL;
    w->ents = NULL;
}

static uint64_t fingerprint_of(const struct dataset *d)
{
    static const char tag[] = "lejepa-dataset-v1";
    uint64_t h = hash_fnv1a(HASH_FNV_OFFSET, tag, sizeof tag);
    for (int s = 0; s < DATASET_N_SPLITS; s++) {
        const struct dataset_split *sp = &d->split[s];
        h = hash_fnv1a(h, split_names[s], strlen(split_names[s]) + 1);
        unsigned char count[8];
        for (int b = 0; b < 8; b++)
            count[b] = (unsigned char)((uint64_t)sp->n >> (8 * b));
        h = hash_fnv1a(h, count, sizeof count);
        for (size_t i = 0; i < sp->n; i++)
            h = hash_fnv1a(h, sp->paths[i], strlen(sp->paths[i]) + 1);
    }
    return h;
}

/* Every image below root, at any depth, unlabelled (-1). */
static int walk_all(struct walk *w, const char *root, char *err)
{
    int fd = open(root, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return errf(err, "%s: cannot open: %s", root, strerror(errno));
    return walk_class_dir(w, root, fd, -1, 0, err);
}

/* A root without train/: its images (at any depth) are an unlabelled
 * train split when some sit directly in it. Its paths are relative to the
 * root ("a.jpg", "2024/b.jpg"). */
static int walk_flat(struct dataset *d, struct walk *w, char *err)
{
    DIR *dir = opendir(d->root);
    if (!dir)
        return errf(err, "%s: cannot open: %s", d->root, strerror(errno));
    size_t images = 0, folders = 0;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(dir);
        if (!e)
            break;
        if (e->d_name[0] == '.')
            continue;
        char kind = entry_kind(dirfd(dir), e);
        folders += kind == 'd';
        images += kind == 'f' && dataset_is_image_name(e->d_name);
    }
    const char *base = strrchr(d->root, '/');
    base = base ? base + 1 : d->root;
    if (strcmp(base, "train") == 0 || strcmp(base, "val") == 0) {
        closedir(dir);
        int parent = base > d->root + 1 ? (int)(base - d->root - 1) : 0;
        return errf(err, "%s is the %s split of a dataset, not its root: "
                    "give the folder that holds %s/ (%.*s)", d->root, base,
                    base, parent ? parent : 1, parent ? d->root : ".");
    }
    if (images == 0) {
        closedir(dir);
        return errf(err, "%s: no train/ folder and no images directly in it "
                    "(%zu folders); " DATASET_HINT, d->root, folders);
    }
    closedir(dir);
    d->unlabelled = 1;
    return walk_all(w, d->root, err);
}

/* Indexes one split; a missing val folder is not an error, a missing train
 * folder makes the root an unlabelled folder of images (walk_flat). */
static int index_split(struct dataset *d, int split, char *err)
{
    char path[DATASET_PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", d->root, split_names[split]);
    struct walk *w = xcalloc(1, sizeof *w);
    w->split = split;
    DIR *dir = opendir(path);
    int rc;
    if (split == DATASET_VAL && (d->flat || (!dir && errno == ENOENT))) {
        rc = 0; /* no val split; a flat folder's images are all train */
        if (dir)
            closedir(dir);
        goto done;
    } else if (!dir && errno == ENOENT) {
        d->flat = 1;
        rc = walk_flat(d, w, err);
    } else if (!dir) {
        rc = errf(err, "%s: cannot open: %s; " DATASET_HINT, path,
                  strerror(errno));
        goto done;
    } else {
        w->rel_len = strlen(split_names[split]);
        memcpy(w->rel, split_names[split], w->rel_len + 1);
        rc = walk_split(d, w, dir, err);
        closedir(dir);
    }
    if (rc == 0) {
        split_take(&d->split[split], w);
        if (split == DATASET_VAL)
            d->has_val = 1;
    }
done:
    free(w->pool);
    free(w->ents);
    free(w);
    return rc;
}

/* The second component of a "train/<class>/..." path into out; 0 when the
 * path has no class folder. */
static int class_of(const char *path, size_t skip, char *out, size_t cap)
{
    const char *c = path + skip, *slash = strchr(c, '/');
    if (!slash || slash == c || (size_t)(slash - c) >= cap)
        return 0;
    memcpy(out, c, (size_t)(slash - c));
    out[slash - c] = '\0';
    return 1;
}

static int has_prefix(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

int dataset_build(struct dataset *d, const struct dataset_entry *e, size_t n,
                  char *err)
{
    /* classes an index named (empty class folders included) */
    size_t given = d->n_classes;
    int splits = 0, labelled = given > 0;
    char cls[256];
    for (size_t i = 0; i < n; i++)
        splits |= has_prefix(e[i].path, "train/");
    for (size_t i = 0; i < n && splits; i++) {
        if (!has_prefix(e[i].path, "train/") && !has_prefix(e[i].path, "val/"))
            return errf(err, "%s: '%s' is in neither train/ nor val/, "
                        "as every other path is", d->root, e[i].path);
        labelled |= has_prefix(e[i].path, "train/") &&
            class_of(e[i].path, 6, cls, sizeof cls);
    }
    /* the classes: the folders below train/, sorted, once each */
    size_t cap = given;
    for (size_t i = 0; i < n && labelled && !given; i++) {
        if (!has_prefix(e[i].path, "train/") ||
            !class_of(e[i].path, 6, cls, sizeof cls) ||
            !dataset_is_image_name(e[i].path))
            continue;
        if (d->n_classes == cap) {
            cap = cap ? cap * 2 : 64;
            d->classes = xrealloc(d->classes, cap * sizeof *d->classes);
        }
        d->classes[d->n_classes++] = xstrdup(cls);
    }
    qsort(d->classes, d->n_classes, sizeof *d->classes, cmp_str);
    size_t k = 0;
    for (size_t i = 0; i < d->n_classes; i++) {
        if (k > 0 && strcmp(d->classes[k - 1], d->classes[i]) == 0)
            free(d->classes[i]);
        else
            d->classes[k++] = d->classes[i];
    }
    d->n_classes = k;
    d->unlabelled = !labelled;
    d->flat = !splits;
    struct walk *w[DATASET_N_SPLITS];
    for (int s = 0; s < DATASET_N_SPLITS; s++) {
        w[s] = xcalloc(1, sizeof *w[s]);
        w[s]->split = s;
    }
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        int s = splits && has_prefix(e[i].path, "val/") ? DATASET_VAL
                                                        : DATASET_TRAIN;
        struct walk *ws = w[s];
        size_t len = strlen(e[i].path);
        int32_t label = -1;
        if (!dataset_is_image_name(e[i].path) || len + 1 > sizeof ws->rel) {
            ws->skipped++;
            continue;
        }
        if (labelled) {
            if (!class_of(e[i].path, s == DATASET_VAL ? 4 : 6, cls,
                          sizeof cls)) {
                ws->skipped++; /* beside the class folders */
                continue;
            }
            const char *name = cls;
            char **hit = bsearch(&name, d->classes, d->n_classes,
                                 sizeof *d->classes, cmp_str);
            if (!hit) {
                rc = errf(err, "%s: '%s': class '%s' is not among the %zu "
                          "classes of train/", d->root, e[i].path, cls,
                          d->n_classes);
                break;
            }
            label = (int32_t)(hit - d->classes);
        }
        memcpy(ws->rel, e[i].path, len + 1);
        ws->rel_len = len;
        walk_add_entry(ws, label, e[i].shard, e[i].offset, e[i].held);
        if (s == DATASET_VAL)
            d->has_val = 1;
    }
    for (int s = 0; s < DATASET_N_SPLITS; s++) {
        if (rc == 0)
            split_take(&d->split[s], w[s]);
        free(w[s]->pool);
        free(w[s]->ents);
        free(w[s]);
    }
    return rc;
}

/* The bitmap of held samples (NULL when every one is), train then val. */
static void make_held(struct dataset *d)
{
    size_t nt = d->split[DATASET_TRAIN].n, total = nt + d->split[DATASET_VAL].n;
    size_t have = 0;
    for (int s = 0; s < DATASET_N_SPLITS; s++)
        for (size_t i = 0; i < d->split[s].n; i++)
            have += d->split[s].held_[i];
    d->n_held = have;
    if (have == total)
        return;
    d->held = xcalloc((total + 7) / 8 + 1, 1);
    for (int s = 0; s < DATASET_N_SPLITS; s++)
        for (size_t i = 0; i < d->split[s].n; i++) {
            size_t b = (s == DATASET_VAL ? nt : 0) + i;
            if (d->split[s].held_[i])
                d->held[b / 8] |= (uint8_t)(1u << (b % 8));
        }
}

int dataset_open(struct dataset *d, const char *root, char *err)
{
    memset(d, 0, sizeof *d);
    size_t len = strlen(root);
    while (len > 1 && root[len - 1] == '/')
        len--;
    if (len == 0)
        return errf(err, "empty dataset path; " DATASET_HINT);
    if (len + 64 > DATASET_PATH_MAX)
        return errf(err, "%.64s...: dataset path too long", root);
    d->root = xmalloc(len + 1);
    memcpy(d->root, root, len);
    d->root[len] = '\0';

    struct stat st;
    if (stat(d->root, &st) != 0) {
        errf(err, "%s: %s; " DATASET_HINT, d->root, strerror(errno));
        goto fail;
    }
    if (!S_ISDIR(st.st_mode)) {
        errf(err, "%s: not a directory; " DATASET_HINT, d->root);
        goto fail;
    }
    int listed = dataset_open_listing(d, err);
    if (listed < 0 ||
        (listed == 0 && (index_split(d, DATASET_TRAIN, err) != 0 ||
                         index_split(d, DATASET_VAL, err) != 0)))
        goto fail;
    if (d->split[DATASET_TRAIN].n == 0) {
        errf(err, "%s/train: no images (%zu class folders, %zu other files); "
             DATASET_HINT, d->root, d->n_classes,
             d->split[DATASET_TRAIN].skipped);
        goto fail;
    }
    if (listed && d->flat) {
        /* an index or shards of a flat folder: no val, as in the walk */
        d->has_val = 0;
    }
    make_held(d);
    if (d->n_held == 0) {
        errf(err, "%s: this copy holds none of the dataset's %zu samples "
             "(its index lists files or shards that are not here)", d->root,
             d->split[DATASET_TRAIN].n + d->split[DATASET_VAL].n);
        goto fail;
    }
    d->fingerprint = fingerprint_of(d);
    return 0;
fail:
    dataset_free(d);
    return -1;
}

int dataset_holds(const struct dataset *d, int split, size_t index)
{
    size_t b = (split == DATASET_VAL ? d->split[DATASET_TRAIN].n : 0) + index;
    return !d->held || (d->held[b / 8] >> (b % 8)) & 1;
}

void dataset_free(struct dataset *d)
{
    for (size_t c = 0; c < d->n_classes; c++)
        free(d->classes[c]);
    free(d->classes);
    for (int s = 0; s < DATASET_N_SPLITS; s++)
        dataset_split_free(&d->split[s]);
    for (size_t i = 0; i < d->n_shards; i++)
        free(d->shards[i]);
    free(d->shards);
    free(d->held);
    free(d->root);
    memset(d, 0, sizeof *d);
}

void dataset_split_free(struct dataset_split *s)
{
    free(s->paths);
    free(s->labels);
    free(s->held_);
    free(s->shard);
    free(s->offset);
    free(s->pool_);
    memset(s, 0, sizeof *s);
}

int dataset_list_images(struct dataset_split *s, const char *root, char *err)
{
    memset(s, 0, sizeof *s);
    struct stat st;
    if (stat(root, &st) != 0)
        return errf(err, "%s: %s", root, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return errf(err, "%s: not a directory", root);
    struct walk *w = xcalloc(1, sizeof *w);
    int rc = walk_all(w, root, err);
    if (rc == 0)
        split_take(s, w);
    free(w->pool);
    free(w->ents);
    free(w);
    return rc;
}

int dataset_sample_path(const struct dataset *d, int split, size_t index,
                        char *buf, size_t len)
{
    if (split < 0 || split >= DATASET_N_SPLITS || index >= d->split[split].n)
        return -1;
    int n = snprintf(buf, len, "%s/%s", d->root, d->split[split].paths[index]);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

void dataset_print_summary(const struct dataset *d, FILE *out)
{
    enum { SHOWN = 10 };
    char fp[17];
    dataset_format_fingerprint(d->fingerprint, fp);
    if (d->unlabelled) {
        fprintf(out, "dataset %s: unlabelled (%s), 0 classes\n", d->root,
                d->flat ? "images directly in it" : "images in train/");
    } else {
        fprintf(out, "dataset %s: %zu classes (", d->root, d->n_classes);
        for (size_t c = 0; c < d->n_classes && c < SHOWN; c++)
            fprintf(out, "%s%s", c ? ", " : "", d->classes[c]);
        fprintf(out, "%s)\n", d->n_classes > SHOWN ? ", ..." : "");
    }
    for (int s = 0; s < DATASET_N_SPLITS; s++) {
        const struct dataset_split *sp = &d->split[s];
        if (s == DATASET_VAL && !d->has_val) {
            fprintf(out, "  val: none (%s)\n",
                    d->flat ? "a flat folder is all train" : "no val folder");
            continue;
        }
        fprintf(out, "  %s: %zu images", split_names[s], sp->n);
        if (sp->skipped)
            fprintf(out, ", %zu non-image files skipped", sp->skipped);
        fputc('\n', out);
    }
    fprintf(out, "  fingerprint: %s\n", fp);
}
