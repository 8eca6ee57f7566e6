/*
 * eval.h: what the parts of the lejepa-eval program share: its options, the
 * task set, one result (a RESULT's source, step and values) and the log.
 * The math lives in knn.h, linprobe.h, pca.h and segmap.h; this header is
 * only the program's glue and knows nothing of sockets.
 */
#ifndef LEJEPA_EVAL_H
#define LEJEPA_EVAL_H

#include "util.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fewshot.h"
#include "keys.h"
#include "msg.h"

#define EVAL_TASK_KNN 1u
#define EVAL_TASK_LINEAR 2u
#define EVAL_TASK_SEGMAP 4u
/* the official protocol's probe (probe_adamw.h): RESULT source linear,
 * key linear_adamw_top1 */
#define EVAL_TASK_PROBE 8u

/* Default bound on one snapshot's embeddings held in memory (MiB). */
#define EVAL_DEFAULT_MAX_MB 2048
/* Labels at or above this are refused: knn and the probe size per class. */
#define EVAL_MAX_CLASSES 100000

struct eval_opts {
    const char *endpoint;       /* --connect */
    const char *out;            /* --out; NULL = runs/<run name> */
    const char *train, *val;    /* offline prefixes */
    unsigned tasks;             /* EVAL_TASK_* */
    bool tasks_given;           /* --tasks on the command line */
    bool json;                  /* offline: also print one JSON object */
    int threads;                /* 0 = all cores */
    size_t max_bytes;           /* per snapshot of embeddings */
    struct fewshot_options fewshot;  /* --shots, --seeds; n_shots 0: off */
    char name[256];             /* name in logs and HELLO */
    struct keys_client keys;    /* --key, --server-key */
};

/* One RESULT to send (or, offline, to print): room for a few-shot mean
 * and std per shot count. */
#define EVAL_RESULT_VALUES (2 * FEWSHOT_MAX_SHOTS)
/* Results of eval_tasks_embed: kNN, linear, the AdamW probe, few-shot kNN
 * and linear. */
#define EVAL_EMBED_RESULTS 5
struct eval_result {
    enum msg_source source;
    uint64_t step;
    int n;
    const char *keys[EVAL_RESULT_VALUES];    /* static strings, or names in
                                                the program's fewshot_options */
    double values[EVAL_RESULT_VALUES];
};

/* "HH:MM:SS [name] message" on stderr, through util_log. */
#define eval_log util_log
#define eval_log_set_name util_log_set_name

/* Parses "knn,linear,segmap" into EVAL_TASK_* bits; -1 with err. */
int eval_parse_tasks(const char *s, unsigned *tasks, char *err);

/* Runs kNN and/or the linear probe (tasks & (KNN | LINEAR)) on one pair of
 * splits; the class count is the largest label + 1 (labels were checked to
 * be in [-1, EVAL_MAX_CLASSES)). With fs->n_shots > 0 (fs may be NULL) also
 * the few-shot versions of the same tasks (fewshot.h): one more result per
 * task (source knn / linear) holding every shot's mean and std, under
 * fs's names. An unlabelled snapshot (any label -1) or one with fewer than
 * 2 classes gets no label task: one system result {eval_unlabelled: 1}
 * instead, logged. Writes the results into out (room for EVAL_EMBED_RESULTS)
 * with the given step; returns their count, or -1 with err. */
int eval_tasks_embed(const float *train, const int32_t *train_labels,
                     int64_t n_train, const float *val,
                     const int32_t *val_labels, int64_t n_val, int dim,
                     unsigned tasks, const struct fewshot_options *fs,
                     uint64_t step, struct eval_result *out, char *err);

/* Segmentation maps of one FEATMAP (eval_tasks.c): writes
 * DIR/segmaps/step-<step>.png and replaces DIR/segmaps/latest.png (both
 * atomically). segmap_iou (and segmap_attn_iou with attention) is reported
 * only when the images have a natural foreground: at least
 * EVAL_SEGMAP_MIN_BACKGROUND of their pixels are zero in every channel.
 * Returns the number of results written to out (0 or 1), or -1 with err. */
#define EVAL_SEGMAP_MIN_BACKGROUND 0.05
struct eval_featmap;
int eval_tasks_segmap(const struct eval_featmap *f, const char *dir,
                      struct eval_result *out, char *err);

/* Online mode (eval_conn.c): runs until SIGINT/SIGTERM (a byte on stop_fd),
 * a REFUSE or a handshake the trainer fails (keys). Returns the exit
 * status: 0 clean stop, 1 refused. */
int eval_run_online(const struct eval_opts *o, int stop_fd);

/* Offline mode (eval_offline.c): PREFIX.emb.npy and PREFIX.labels.npy for
 * train and val. Returns the exit status: 0, or 2 on a bad file (named). */
int eval_run_offline(const struct eval_opts *o);

#endif
