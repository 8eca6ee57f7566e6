/*
 * msg.h: the wire protocol every program speaks (DESIGN.md §3-4, the field
 * lists in proto/PROTOCOL.md): message kinds, one struct per kind, encoding
 * to MessagePack, validating decoding, limits and the ZeroMQ framing helpers.
 * It knows nothing of models, datasets or the run's config: limits are
 * computed from plain numbers (struct msg_limit_params).
 *
 * Ownership of a decoded message:
 *   - large blobs (pixels, labels, embeddings, features, attention) POINT INTO
 *     the input buffer (zero copy): the message is valid only while that
 *     buffer (for msg_recv*, the zmq_msg_t frame) lives and is unchanged;
 *   - strings (NUL-terminated copies) and small arrays (indices, labels of a
 *     batch, failures, groups, values, classes, lines, tickets) live in the
 *     caller's struct msg_arena; each msg_decode resets the arena, so a
 *     decoded message is also invalid after the next decode into the same
 *     arena. The caller frees the arena with msg_arena_free.
 * Blob bytes are little-endian and may be unaligned: read float/int32 blobs
 * with msg_blob_read_f32 / msg_blob_read_i32 (or memcpy), never by casting.
 */
#ifndef LEJEPA_MSG_H
#define LEJEPA_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>
#include <zmq.h>

#define PROTO_VERSION 1

/* Names, roles, paths, keys and class names: at most this many bytes. Long
 * text (config, reasons, metrics lines) is bounded by msg_limits.max_str. */
#define MSG_NAME_MAX 1024
/* Fields per map (root or nested); more is rejected before any lookup. */
#define MSG_MAX_FIELDS 64
/* Hard cap on msg_limits.max_depth (msgpack-c's own parser stack is 32). */
#define MSG_DEPTH_CAP 32

/* Kinds carry the enum's prefix: glibc's <sys/socket.h> already defines an
 * enumerator MSG_BATCH (a sendmmsg flag) under _GNU_SOURCE. */
enum msg_kind {
    MSG_KIND_HELLO = 1,
    MSG_KIND_WELCOME,
    MSG_KIND_REFUSE,
    MSG_KIND_HISTORY,
    MSG_KIND_TICKET,
    MSG_KIND_BATCH,
    MSG_KIND_RETURN,
    MSG_KIND_HEARTBEAT,
    MSG_KIND_RESULT,
    MSG_KIND_BYE,
    MSG_KIND_EMBED,
    MSG_KIND_FEATMAP,
    MSG_KIND_METRIC,
};
#define MSG_KIND_FIRST MSG_KIND_HELLO
#define MSG_KIND_LAST MSG_KIND_METRIC

enum msg_role { MSG_ROLE_LOADER, MSG_ROLE_EVALUATOR, MSG_ROLE_MONITOR };
enum msg_split { MSG_SPLIT_TRAIN, MSG_SPLIT_VAL };
enum msg_work { MSG_WORK_TRAIN, MSG_WORK_EVAL };   /* TICKET/BATCH "kind" */
/* Whose fault a BATCH failure is (BATCH.failures[].class). DECODE: the
 * file itself (corrupt, unsupported, too many pixels): excluding it is
 * right, another try gives the same answer. ENV: the loader's situation
 * (missing or unreadable file, I/O error, worker crashed, killed by its
 * memory limit or timed out, index not held): another loader or a later
 * try may succeed. DECODE is 0, so code that predates the field means
 * what it meant then. */
enum msg_fail_class { MSG_FAIL_DECODE, MSG_FAIL_ENV };
enum msg_source {
    MSG_SOURCE_TRAIN, MSG_SOURCE_EVAL, MSG_SOURCE_KNN, MSG_SOURCE_LINEAR,
    MSG_SOURCE_SEGMAP, MSG_SOURCE_SYSTEM,
};

/* On-wire names ("HELLO", "loader", "train", ...); NULL when out of range. */
const char *msg_kind_name(enum msg_kind k);
const char *msg_role_name(enum msg_role r);
const char *msg_split_name(enum msg_split s);
const char *msg_work_name(enum msg_work w);
const char *msg_fail_class_name(enum msg_fail_class c);
const char *msg_source_name(enum msg_source s);

/* Loader's copy of the dataset (HELLO.dataset). */
struct msg_dataset {
    uint64_t fingerprint;
    uint64_t n_train, n_val;
    uint32_t n_classes;
    const char *const *classes;     /* (n_classes) */
    /* The samples this copy holds (optional): NULL for all, else a bitmap
     * over the train then the val samples, bit b in byte b / 8 at
     * 1 << (b % 8), of exactly (n_train + n_val + 7) / 8 bytes. */
    const uint8_t *held;
};

struct msg_hello {
    enum msg_role role;
    const char *name;
    const char *software;           /* version string */
    uint64_t pid;
    uint32_t credit;                /* tickets the loader may hold; 0 otherwise */
    bool eval_view;                 /* loaders: answers TICKET.eval_view */
    bool has_dataset;               /* loaders: true; others: false (nil) */
    struct msg_dataset dataset;
};

struct msg_welcome {
    const char *run;                /* run name */
    const char *broadcast;          /* PUB endpoint */
    const char *config;             /* effective config, INI text */
    uint32_t heartbeat_ms;
    uint64_t client_id;
    /* optional (NULL: absent): a data-parallel trainer's rank 0 names the
     * work endpoint of the rank this loader is to serve; the loader closes
     * this connection and says HELLO there (PROTOCOL.md, Several ranks) */
    const char *serve;
};

/* REFUSE and BYE. */
struct msg_text {
    const char *reason;
};

/* Request (client->trainer): start, n_lines = 0, done = false.
 * Reply: start, lines (each one JSON object of metrics.jsonl), done. */
struct msg_history {
    uint64_t start;
    uint32_t n_lines;
    const char *const *lines;       /* (n_lines) */
    bool done;
};

struct msg_ticket {
    uint64_t ticket, step;
    uint32_t epoch;
    enum msg_split split;
    enum msg_work work;
    uint64_t seed;                  /* run seed */
    bool eval_view;                 /* work = train: also each sample's eval
                                     * view, as the BATCH's last group */
    uint32_t n;                     /* 1..max_samples */
    const uint64_t *indices;        /* (n) sample indices */
};

/* One resolution group of a batch: pixels (views, n, c, h, w) uint8. */
struct msg_group {
    uint32_t views, c, h, w;
    const uint8_t *pixels;          /* into the input buffer */
};

struct msg_failure {
    uint64_t index;
    const char *path;               /* relative path of the sample */
    const char *reason;
    enum msg_fail_class fail_class; /* wire "class"; absent decodes as DECODE */
};

struct msg_batch {
    uint64_t ticket, step;
    uint32_t epoch;
    enum msg_split split;
    enum msg_work work;
    uint32_t n;                     /* samples that succeeded, ticket order */
    const uint64_t *indices;        /* (n) */
    const int32_t *labels;          /* (n) */
    uint32_t n_groups;              /* 1..max_groups */
    const struct msg_group *groups; /* (n_groups) */
    uint32_t n_failures;
    const struct msg_failure *failures; /* (n_failures) */
    double decode_ms;
};

struct msg_return {
    uint32_t n;
    const uint64_t *tickets;        /* (n) ids handed back unfinished */
};

struct msg_heartbeat {
    double time;                    /* sender's unix time */
    uint32_t held;                  /* tickets in hand */
};

struct msg_value {
    const char *key;
    double value;                   /* may be NaN/Inf (a diverged loss) */
};

/* RESULT (evaluator->trainer) and METRIC (trainer->subscribers). */
struct msg_metric {
    double time;
    uint64_t step;
    uint32_t epoch;
    enum msg_source source;
    uint32_t n_values;              /* <= max_values, distinct keys */
    const struct msg_value *values; /* (n_values) */
};

/* One chunk of an eval snapshot's embeddings, or (end) its end marker. */
struct msg_embed {
    uint64_t snapshot, step;
    uint32_t seq;                   /* chunk number from 0 */
    enum msg_split split;
    bool end;                       /* end marker: n = 0, chunks = total */
    uint32_t chunks;
    uint32_t n, dim;
    const void *labels;             /* (n) int32 LE, into the input buffer */
    const void *emb;                /* (n, dim) float32 LE */
};

struct msg_featmap {
    uint64_t snapshot, step;
    uint32_t n, c, h, w;
    const uint8_t *pixels;          /* (n, c, h, w) eval-view pixels */
    const void *labels;             /* (n) int32 LE */
    uint32_t fdim, gh, gw;
    const void *feats;              /* (n, fdim, gh, gw) float32 LE */
    uint32_t heads;                 /* 0: no attention */
    const void *attn;               /* (n, heads, gh, gw) float32 LE, or NULL */
};

struct msg {
    enum msg_kind kind;
    union {
        struct msg_hello hello;
        struct msg_welcome welcome;
        struct msg_text refuse;
        struct msg_history history;
        struct msg_ticket ticket;
        struct msg_batch batch;
        struct msg_return ret;
        struct msg_heartbeat heartbeat;
        struct msg_metric result;   /* MSG_KIND_RESULT */
        struct msg_text bye;
        struct msg_embed embed;
        struct msg_featmap featmap;
        struct msg_metric metric;   /* MSG_KIND_METRIC */
    };
};

/* ---- limits ---------------------------------------------------------- */

struct msg_limits {
    size_t max_msg_bytes;   /* whole frame */
    size_t max_samples;     /* indices per ticket / batch, failures */
    size_t max_views;       /* views per group */
    size_t max_groups;      /* groups per batch */
    size_t max_pixels;      /* c*h*w of one view (also per FEATMAP image) */
    size_t max_emb_dim;
    size_t max_feat_elems;  /* n*fdim*gh*gw and n*heads*gh*gw of a FEATMAP */
    size_t max_str;         /* long strings: config, reasons, metric lines */
    size_t max_array;       /* classes, history lines, returned tickets */
    size_t max_values;      /* keys of a RESULT/METRIC */
    size_t max_depth;       /* nesting of maps/arrays, <= MSG_DEPTH_CAP */
};

/* Plain numbers the limits follow from (the lead maps config -> these). */
struct msg_limit_params {
    size_t samples;                 /* samples per ticket */
    size_t global_views, global_size;   /* count and side (px) of global crops */
    size_t local_views, local_size;
    size_t channels;
    size_t emb_dim;                 /* embedding dim published in EMBED */
    size_t embed_chunk;             /* samples per EMBED chunk */
    size_t featmap_images;          /* images per FEATMAP */
    size_t feat_dim, grid_h, grid_w, heads;  /* patch feature grid, attn heads */
    double margin;                  /* >= 1, e.g. 1.25 */
};

struct config;
/* The view numbers of a run's config ([run] ticket_size, [views] counts,
 * sizes and channels) with margin 1.25; the model-dependent fields (emb_dim,
 * embed_chunk, featmap_images, feat_dim, grid, heads) are zero for the
 * trainer, which knows its model, to fill in. */
void msg_limit_params_from_config(struct msg_limit_params *p,
                                  const struct config *c);

/* The groups of the BATCH that answers a ticket with the run's views
 * (PROTOCOL.md, BATCH and TICKET.eval_view): for work = train the global
 * views, then the local ones if there are any; for work = eval one view at
 * the global size; then, with eval_view, that one view last. Fills views,
 * c, h and w of out (pixels NULL) and returns the number of groups. The
 * loader packs, and the trainer checks, by this one rule. */
#define MSG_BATCH_GROUPS 3
struct config_views;
uint32_t msg_batch_layout(const struct config_views *v, enum msg_work work,
                          bool eval_view,
                          struct msg_group out[MSG_BATCH_GROUPS]);

/* Handshake-safe defaults: enough for HELLO/WELCOME/HISTORY/METRIC and small
 * batches (1 MiB messages). */
void msg_limits_default(struct msg_limits *l);
/* Limits for a run: the largest BATCH, EMBED and FEATMAP it can produce times
 * the margin, never below the defaults. */
void msg_limits_compute(struct msg_limits *out, const struct msg_limit_params *p);
/* Sets ZMQ_MAXMSGSIZE on the socket. Call before bind/connect: libzmq reads
 * it when a connection starts. Only stream transports (tcp, ipc) enforce it;
 * inproc does not. Returns 0 or -1 with err. */
int msg_limits_apply(void *zmq_socket, const struct msg_limits *l, char *err);

/* ---- arena for decoded strings and small arrays ----------------------- */

struct msg_arena_block;
struct msg_arena {
    struct msg_arena_block *head;   /* newest block first */
    size_t total;                   /* capacity of all blocks */
};

void msg_arena_init(struct msg_arena *a);
/* Frees every block (the owner of the arena calls it once). */
void msg_arena_free(struct msg_arena *a);
/* Invalidates everything allocated so far; keeps one block of the total
 * size, so a steady stream of similar messages stops allocating. */
void msg_arena_reset(struct msg_arena *a);
/* n bytes, 8-byte aligned, never moved until reset/free; exits on OOM
 * (sizes are bounded by the limits). */
void *msg_arena_alloc(struct msg_arena *a, size_t n);

/* ---- encode / decode --------------------------------------------------- */

/* Appends one message (a msgpack map) to out. Checks what the struct alone
 * can tell (names in range, strings non-NULL, counts vs shapes; blob sizes
 * come from the shapes, overflow-checked). Returns 0 or -1 with err. */
int msg_encode(const struct msg *m, msgpack_sbuffer *out, char *err);

/* Validates and decodes one whole message (see the ownership note above).
 * Returns 0, or -1 with the reason in err (ERR_LEN bytes). */
int msg_decode(struct msg *m, const void *buf, size_t len,
               const struct msg_limits *lim, struct msg_arena *a, char *err);

/* The raw-bytes pre-pass msg_decode runs first: one msgpack value filling
 * exactly len bytes, every declared length/count fitting in the bytes left,
 * at most max_elems array/map elements declared in total (a map entry counts
 * two), nesting <= max_depth. No allocation, no recursion. 0 or -1 with err. */
int msg_precheck(const void *buf, size_t len, size_t max_depth, size_t max_elems,
                 char *err);
/* The max_elems msg_decode passes: what the largest legal message of any kind
 * can hold under l (arrays of max_array/max_samples, values, small maps). */
size_t msg_limits_elems(const struct msg_limits *l);

/* Cross-checks a BATCH against the TICKET it answers: same id, step, epoch,
 * split, kind; every ticket index exactly once in indices or failures;
 * indices in ticket order. 0 or -1 with err. msg_batch_check_part is the
 * same for an answer to part of t (a partial copy's share of it: the
 * trainer sends a loader only the indices it holds): every index at most
 * once, in ticket order, and at least one index answered. */
int msg_batch_check_part(const struct msg_batch *b, const struct msg_ticket *t,
                         char *err);
int msg_batch_check_ticket(const struct msg_batch *b, const struct msg_ticket *t,
                           char *err);

/* Copies n little-endian values out of a (possibly unaligned) blob. */
void msg_blob_read_f32(float *dst, const void *blob, size_t n);
void msg_blob_read_i32(int32_t *dst, const void *blob, size_t n);
/* Writes n values as little-endian bytes (for building blobs to send). */
void msg_blob_write_f32(void *dst, const float *src, size_t n);
void msg_blob_write_i32(void *dst, const int32_t *src, size_t n);

/* ---- ZeroMQ framing ---------------------------------------------------- */

/* Work socket, DEALER side: one msgpack frame. 0 or -1 with err. */
int msg_send(void *sock, const struct msg *m, char *err);
/* Work socket, ROUTER side: identity frame then the msgpack frame. */
int msg_send_to(void *sock, const void *id, size_t id_len, const struct msg *m,
                char *err);
/* msg_send_to that never blocks (ZMQ_DONTWAIT on both frames): with
 * ZMQ_ROUTER_MANDATORY, -1 with errno EAGAIN when the peer's queue is full
 * and EHOSTUNREACH when the peer is gone. */
int msg_send_to_nb(void *sock, const void *id, size_t id_len, const struct msg *m,
                   char *err);
/* PUB socket: topic frame (the kind name) then the msgpack frame. */
int msg_publish(void *sock, const struct msg *m, char *err);
/* The same with ZMQ_DONTWAIT (a PUB socket then drops for a full
 * subscriber instead of blocking). */
int msg_publish_nb(void *sock, const struct msg *m, char *err);

/* Receives and decodes one message. `frame` is initialised by the call in
 * every case and the caller closes it (zmq_msg_close) once done with m, whose
 * blobs point into it. flags: 0 or ZMQ_DONTWAIT.
 *   msg_recv:      one frame (DEALER side);
 *   msg_recv_from: identity frame (copied into id, *id_len; id has room for
 *                  255 bytes) then the message (ROUTER side);
 *   msg_recv_sub:  topic frame, which must equal the kind name, then the
 *                  message (SUB side).
 * Extra frames are drained and rejected. Returns 0, or -1 with err (errno is
 * EAGAIN when ZMQ_DONTWAIT found nothing). */
int msg_recv(void *sock, int flags, zmq_msg_t *frame, struct msg *m,
             const struct msg_limits *lim, struct msg_arena *a, char *err);
int msg_recv_from(void *sock, int flags, void *id, size_t *id_len, zmq_msg_t *frame,
                  struct msg *m, const struct msg_limits *lim, struct msg_arena *a,
                  char *err);
int msg_recv_sub(void *sock, int flags, zmq_msg_t *frame, struct msg *m,
                 const struct msg_limits *lim, struct msg_arena *a, char *err);

#endif
