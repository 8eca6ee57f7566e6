/*
 * fewshot.h: few-shot evaluation of frozen embeddings (issue 15): for each
 * shot count k and seed, a balanced sample of k train rows per class, the
 * kNN classifier (knn.h) and the linear probe (linprobe.h) trained on it
 * and scored on the whole val split; mean and standard deviation over the
 * seeds. Pure math on caller-owned arrays: no files, no sockets.
 *
 * Sampling: the rows of class c, in index order, are shuffled by a partial
 * Fisher-Yates with the rng stream (seed, FEWSHOT_RNG_STREAM, c, 0) and the
 * first k kept, so a seed's k-shot sample is contained in its k'-shot
 * sample for k < k', and any process draws the same rows. A class with
 * fewer than k train rows gives all of them (counted in short_classes); a
 * class without train rows gives none. The sample is returned in ascending
 * row order.
 *
 * Probe: kNN with k = KNN_DEFAULT_K (clamped to the sample size by knn.h).
 * The linear probe standardises features with the mean and std of ALL
 * train embeddings (no labels are used for that, and labels are what
 * few-shot makes scarce): the std of a handful of rows can be near zero and
 * blow a noise feature up. It searches its L2 strength on a held-out tenth, as the
 * full probe does, only when that tenth holds at least one row per class on
 * average (k >= 10); below, a held-out row or two would pick lambda at
 * random, so it fits FEWSHOT_SMALL_LAMBDA, the strongest of the default
 * grid, which suits a handful of rows per class.
 */
#ifndef LEJEPA_FEWSHOT_H
#define LEJEPA_FEWSHOT_H

#include <stdbool.h>
#include <stdint.h>

#define FEWSHOT_MAX_SHOTS 8
#define FEWSHOT_MAX_SEEDS 100
#define FEWSHOT_MAX_K 100000
#define FEWSHOT_DEFAULT_SEEDS 3
#define FEWSHOT_SEARCH_MIN_SHOTS 10
#define FEWSHOT_SMALL_LAMBDA 0.1
/* "FEWSHOTS" in ASCII: the stream tag of the samples. */
#define FEWSHOT_RNG_STREAM 0x46455753484f5453ull
/* Room for "fewshot_linear_top1_100000_std". */
#define FEWSHOT_NAME_LEN 40

enum fewshot_method { FEWSHOT_KNN, FEWSHOT_LINEAR, FEWSHOT_METHODS };

/* The metric names, made once from the shot list so that results can
 * point at them for the life of the program:
 *   fewshot_knn_top1_<k>, fewshot_knn_top1_<k>_std,
 *   fewshot_linear_top1_<k>, fewshot_linear_top1_<k>_std
 * (mean and standard deviation over the seeds, ddof 1; 0 with one seed). */
struct fewshot_options {
    int n_shots;                              /* 0: no few-shot evaluation */
    int shots[FEWSHOT_MAX_SHOTS];             /* k, ascending, distinct */
    int seeds;                                /* 1..FEWSHOT_MAX_SEEDS */
    char mean_name[FEWSHOT_METHODS][FEWSHOT_MAX_SHOTS][FEWSHOT_NAME_LEN];
    char std_name[FEWSHOT_METHODS][FEWSHOT_MAX_SHOTS][FEWSHOT_NAME_LEN];
};

/* Fills o from "1,5,10,100" (sorted, duplicates dropped) and a seed
 * count. Returns 0, or -1 with the reason (naming --shots / --seeds) in
 * err. */
int fewshot_options_init(struct fewshot_options *o, const char *shots,
                         int seeds, char *err);

/* Balanced sample: writes the chosen row indices into rows (room for n)
 * in ascending order and returns their count; *short_classes (may be NULL)
 * gets the number of classes that had fewer than k rows but at least one.
 * labels (n) in [0, n_classes). */
int64_t fewshot_sample(int64_t *rows, const int32_t *labels, int64_t n,
                       int n_classes, int k, uint64_t seed,
                       int *short_classes);

/* One method at one shot count, over the seeds. */
struct fewshot_stat {
    double mean, std;
    double top1[FEWSHOT_MAX_SEEDS];           /* per seed */
};

struct fewshot_result {
    struct fewshot_stat stat[FEWSHOT_METHODS][FEWSHOT_MAX_SHOTS];
    int64_t rows[FEWSHOT_MAX_SHOTS];          /* sample size (seed 0) */
    int short_classes[FEWSHOT_MAX_SHOTS];     /* classes under k rows */
};

/* Runs every shot count and seed for the methods asked (knn, linear):
 * train (n_train, dim) with train_labels, val (n_val, dim) with val_labels,
 * labels in [0, n_classes). Returns 0, or -1 with the reason in err. */
int fewshot_run(const struct fewshot_options *o, bool knn, bool linear,
                const float *train, const int32_t *train_labels,
                int64_t n_train, const float *val, const int32_t *val_labels,
                int64_t n_val, int dim, int n_classes,
                struct fewshot_result *res, char *err);

#endif
