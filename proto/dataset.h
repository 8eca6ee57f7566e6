/*
 * dataset.h: the index of an ImageFolder tree, shared by every process that
 * reads a dataset (loader, trainer with --data, embed). It lists files and
 * names classes; it never opens or decodes an image. Three layouts:
 *
 *   labelled (ImageFolder):
 *     DIR/train/<class>/<file...>  classes = subdirectories of train/, bytewise
 *     DIR/val/<class>/<file...>    optional; every class must exist in train/
 *   unlabelled, with splits (train/ holds images and no folders):
 *     DIR/train/<file>             0 classes, every label -1
 *     DIR/val/<file...>            optional
 *   unlabelled, flat (no DIR/train, some images directly in DIR):
 *     DIR/<file...>                all train, at any depth; no val split
 *
 * The same samples may come as tar shards (uncompressed .tar files in DIR,
 * read with libarchive), each member named by its path in the folder
 * ("train/<class>/<file>", or "<file>" for a flat folder), so a folder and
 * its shards have the same samples, order and fingerprint:
 *
 *   DIR/<name>.tar ...             the shards (no train/ folder beside them)
 *
 * A copy that holds only part of a dataset (some shards, or a folder with
 * files missing) carries the whole dataset's index, written by `lejepa
 * shard` or `lejepa index`:
 *
 *   DIR/lejepa-index.txt           "lejepa-index 1", a line "\tclass\tNAME"
 *                                  per class (a labelled dataset), then one
 *                                  line per sample: "<path>\t<shard or ->"
 *
 * With an index, the dataset is what the index lists (its fingerprint
 * too), and the copy holds the samples whose file, or shard, is present;
 * HELLO tells the trainer which (PROTOCOL.md). Paths in an index or a
 * shard must stay inside the root (no "..", "." or empty components, not
 * absolute). With an index the classes are the ones it lists (so empty
 * class folders count, as in the folder); shards without an index take
 * them from the members' paths, where an empty class folder leaves no
 * trace.
 *
 * A root named train or val without a train/ folder inside is the split of
 * a dataset given by mistake: an error that names its parent. Unlabelled
 * datasets train without the online probe, and evaluators skip the tasks
 * that need labels (PROTOCOL.md: zero classes, label -1).
 *
 * Files may sit in nested folders below a class directory (at most
 * DATASET_MAX_DEPTH levels). Dotfiles and dot-directories are ignored; files
 * whose extension is not an image format libvips reads are skipped and
 * counted. Within a split, samples are ordered bytewise by their path relative
 * to DIR ("train/3-dress/01234.png"); a sample's index is its position in that
 * order and its label the index of its class.
 */
#ifndef LEJEPA_DATASET_H
#define LEJEPA_DATASET_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "hash.h"

/* Folder levels allowed below a class directory; deeper trees (or symlink
 * loops) are an error. */
#define DATASET_MAX_DEPTH 8

enum dataset_split_id { DATASET_TRAIN = 0, DATASET_VAL = 1, DATASET_N_SPLITS = 2 };

struct dataset_split {
    size_t n;           /* number of samples */
    char **paths;       /* (n) relative to root, e.g. "train/1-trouser/00007.png" */
    int32_t *labels;    /* (n) class index of each sample; -1 unlabelled */
    size_t skipped;     /* files that are not images by extension */
    int32_t *shard;     /* (n) index into dataset.shards, -1 a plain file;
                         * NULL: every sample is a plain file */
    uint64_t *offset;   /* (n) with shard: the tar header's offset in it */
    uint8_t *held_;     /* private: (n) 1 when this copy has the sample */
    char *pool_;        /* private: the bytes paths point into */
};

struct dataset {
    char *root;         /* as given, without trailing slashes */
    size_t n_classes;
    char **classes;     /* (n_classes) sorted bytewise (strcmp) */
    struct dataset_split split[DATASET_N_SPLITS];
    int has_val;        /* 0 when DIR/val does not exist */
    int unlabelled;     /* 1: n_classes 0, every label -1 */
    int flat;           /* 1: no DIR/train; paths relative to DIR */
    size_t n_shards;
    char **shards;      /* (n_shards) tar shard file names, relative to root */
    /* What this copy holds (DATASET_INDEX or shards): NULL when it holds
     * every sample, else a bitmap over the train samples then the val
     * samples, bit b in byte b / 8 at 1 << (b % 8). */
    uint8_t *held;
    size_t n_held;      /* samples held */
    /* 64-bit FNV-1a over a version tag and, per split, its name, its count
     * and its sorted relative paths, each NUL-terminated (so "ab"+"c" and
     * "a"+"bc" differ). Class names enter through the paths. */
    uint64_t fingerprint;
};

#define DATASET_INDEX "lejepa-index.txt"

/* Indexes the tree at root. Returns 0, or -1 with the reason (naming the
 * path, with a hint) in err (ERR_LEN bytes); on failure d is left empty and
 * dataset_free(d) is still safe. Free with dataset_free. */
int dataset_open(struct dataset *d, const char *root, char *err);
void dataset_free(struct dataset *d);

/* 1 when this copy holds sample index of split (dataset.held). */
int dataset_holds(const struct dataset *d, int split, size_t index);

/* The bytes of a shard sample: the member whose tar header starts at
 * offset in the file shard_path, malloc'd into *buf (*len bytes), its name
 * into name (cap bytes). 0; -1 with the reason in err when the shard
 * cannot be read (this copy's trouble); -2 when the member itself is not
 * an image file a loader reads (over 1 GiB, or not a regular file). */
int dataset_read_member(const char *shard_path, uint64_t offset, void **buf,
                        size_t *len, char *name, size_t cap, char *err);

/* Writes root/DATASET_INDEX for the dataset d (its samples' paths and
 * shards): what lets a partial copy name the whole. 0, or -1 with err. */
int dataset_write_index(const struct dataset *d, const char *root, char *err);

/* One sample of an index or a shard listing, for dataset_build. */
struct dataset_entry {
    const char *path; /* relative to the root, as in the folder */
    int32_t shard;    /* index into d->shards, or -1: a plain file */
    uint64_t offset;  /* with a shard: the member's tar header offset */
    int held;         /* 1: this copy can read it */
};
/* Private to dataset*.c: builds the splits of d (root and shards set) from
 * a listing, by the folder layout rules. */
int dataset_build(struct dataset *d, const struct dataset_entry *e, size_t n,
                  char *err);
/* Private to dataset*.c: when root holds DATASET_INDEX or tar shards,
 * builds d from them (1); 0 when it is a plain folder; -1 with err. */
int dataset_open_listing(struct dataset *d, char *err);

/* Every image file below root, the folder itself being a class folder:
 * nested folders up to DATASET_MAX_DEPTH, dotfiles and dot-directories
 * ignored, other files skipped and counted in s->skipped. s->paths are
 * relative to root ("a/b.png") and sorted bytewise, s->labels all -1; no
 * image at all is not an error here. Returns 0, or -1 with the reason
 * (naming the path) in err, s left empty. Free with dataset_split_free. */
int dataset_list_images(struct dataset_split *s, const char *root, char *err);
void dataset_split_free(struct dataset_split *s);

/* "train" / "val"; dataset_split_parse returns the id or -1. */
const char *dataset_split_name(int split);
int dataset_split_parse(const char *name);

/* Writes root + "/" + the sample's relative path into buf (len bytes).
 * Returns 0, or -1 if the index is out of range or buf too small. */
int dataset_sample_path(const struct dataset *d, int split, size_t index,
                        char *buf, size_t len);

/* The fingerprint as 16 lowercase hex digits (out holds 17 bytes). */
void dataset_format_fingerprint(uint64_t fingerprint, char out[17]);

/* Returns 1 if the file name's extension (case-insensitive) is an image
 * format the index accepts, 0 otherwise. */
int dataset_is_image_name(const char *name);

/* A few lines: root, classes, per-split counts and skips, fingerprint. */
void dataset_print_summary(const struct dataset *d, FILE *out);

#endif
