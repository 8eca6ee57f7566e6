/*
 * knn.h: weighted k-nearest-neighbour classification of frozen embeddings,
 * the DINO protocol (DESIGN.md §6): cosine similarity between L2-normalised
 * train and val embeddings, the k most similar train rows per val row vote
 * for their class with weight exp(sim / T), the class with the largest summed
 * weight wins. Pure math on caller-owned arrays: no files, no sockets.
 *
 * Determinism and ties:
 *  - among equal similarities the train row with the LOWER index ranks first
 *    (so it enters the top k before a later equal one);
 *  - among classes with equal summed weight the LOWER class index wins;
 *  - an all-zero embedding has norm 0 and is left at zero: its cosine
 *    similarity with everything is 0.
 */
#ifndef LEJEPA_KNN_H
#define LEJEPA_KNN_H

#include <stdint.h>

#define KNN_DEFAULT_K 20
#define KNN_DEFAULT_TEMPERATURE 0.07f
/* Bound on the (block rows x n_train) similarity buffer, in floats (64 MB). */
#define KNN_BLOCK_FLOATS (16l * 1024 * 1024)

/* Top-1 accuracy of the weighted kNN classifier.
 *   train        (n_train, dim) row-major float32, not modified
 *   train_labels (n_train) in [0, n_classes)
 *   val          (n_val, dim)
 *   val_labels   (n_val) in [0, n_classes)
 *   pred         (n_val) predicted classes, or NULL
 * k > n_train is clamped to n_train. The similarities are computed with
 * cblas_sgemm in blocks of val rows (at most KNN_BLOCK_FLOATS similarities
 * live at once, plus one normalised block of val rows); the top-k selection
 * runs under OpenMP over the rows of a block, never around BLAS.
 * Returns 0 with *top1 in [0, 1], or -1 with the reason in err (ERR_LEN):
 * sizes out of range, a label outside [0, n_classes), a non-finite value. */
int knn_top1(const float *train, const int32_t *train_labels, int64_t n_train,
             const float *val, const int32_t *val_labels, int64_t n_val,
             int dim, int n_classes, int k, float temperature, double *top1,
             int32_t *pred, char *err);

/* Plain reference of the same classifier in double precision, one val row
 * at a time, no BLAS and no threads; same tie rules. For tests only: inputs
 * are assumed valid. Writes pred (n_val) and returns the top-1 accuracy. */
double knn_top1_ref(const float *train, const int32_t *train_labels,
                    int64_t n_train, const float *val,
                    const int32_t *val_labels, int64_t n_val, int dim,
                    int n_classes, int k, float temperature, int32_t *pred);

#endif
