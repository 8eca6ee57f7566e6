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
    /* 64-bit FNV-1a over a version tag and, per split, its name, its count
     * and its sorted relative paths, each NUL-terminated (so "ab"+"c" and
     * "a"+"bc" differ). Class names enter through the paths. */
    uint64_t fingerprint;
};

/* Indexes the tree at root. Returns 0, or -1 with the reason (naming the
 * path, with a hint) in err (ERR_LEN bytes); on failure d is left empty and
 * dataset_free(d) is still safe. Free with dataset_free. */
int dataset_open(struct dataset *d, const char *root, char *err);
void dataset_free(struct dataset *d);

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
