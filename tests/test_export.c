/*
 * test_export.c: `lejepa export` / export_backbone against the names and
 * shapes PyTorch users load. Checkpoints are made here (random weights and
 * BatchNorm statistics, the metadata lejepa-train writes) and exported;
 * the export must match, key for key and shape for shape, the committed
 * lists of torchvision's resnet18 (tests/fixtures/export/
 * resnet18_torchvision.txt, from torchvision itself) and timm's
 * vit_tiny_patch16_224 (vit_tiny_timm.txt, from timm's source), hold the
 * checkpoint's values, and carry nothing else. The small-stem 1-channel
 * ResNet differs from torchvision's resnet18 in conv1.weight only:
 * (64, 1, 3, 3) instead of (64, 3, 7, 7). A committed tiny export and its
 * embeddings computed by PyTorch (tools/check_export.py) check that the
 * weights mean in PyTorch what they mean here.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adamw.h"
#include "ckpt.h"
#include "config.h"
#include "export.h"
#include "lejepa.h"
#include "model_config.h"
#include "safetensors.h"
#include "testing.h"
#include "util.h"

#define STEP 7
#define N_CLASSES 3
#define OUT_CAP 65536
#define EMB_TOL 1e-4

struct ref_row {
    char name[PARAMS_NAME_LEN];
    char dtype[8];
    int ndim;
    int64_t shape[ST_MAX_DIMS];
};

struct ref {
    struct ref_row *r;
    size_t n;
};

static char *tmp;

/* Reads a committed list: "NAME DTYPE NDIM DIM..." lines, "#" comments. */
static void read_ref(const char *fixture, struct ref *out)
{
    FILE *f = fopen(testing_fixture(fixture), "r");
    CU_ASSERT_FATAL(f != NULL);
    memset(out, 0, sizeof *out);
    char line[512];
    size_t cap = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        if (out->n == cap) {
            cap = cap ? 2 * cap : 64;
            out->r = xrealloc(out->r, cap * sizeof *out->r);
        }
        struct ref_row *r = &out->r[out->n++];
        int used = 0;
        CU_ASSERT_FATAL(sscanf(line, "%95s %7s %d%n", r->name, r->dtype, &r->ndim,
                               &used) == 3);
        CU_ASSERT_FATAL(r->ndim >= 0 && r->ndim <= ST_MAX_DIMS);
        for (int d = 0; d < r->ndim; d++) {
            long long v;
            int k = 0;
            CU_ASSERT_FATAL(sscanf(line + used, "%lld%n", &v, &k) == 1);
            r->shape[d] = v;
            used += k;
        }
    }
    fclose(f);
    CU_ASSERT_FATAL(out->n > 0);
}

static struct ref_row *ref_find(struct ref *ref, const char *name)
{
    for (size_t i = 0; i < ref->n; i++)
        if (strcmp(ref->r[i].name, name) == 0)
            return &ref->r[i];
    return NULL;
}

/* Strict comparison, as load_state_dict(strict=True) plus the shapes:
 * returns the number of tensors missing, unexpected or of another dtype or
 * shape, each printed. */
static int compare(const struct st_file *f, struct ref *ref)
{
    int bad = 0;
    for (size_t i = 0; i < f->n; i++) {
        const struct st_tensor *t = &f->tensors[i];
        const struct ref_row *r = ref_find(ref, t->name);
        int same = r && strcmp(r->dtype, st_dtype_name(t->dtype)) == 0 &&
                   r->ndim == t->ndim;
        for (int d = 0; same && d < t->ndim; d++)
            same = r->shape[d] == t->shape[d];
        if (!same) {
            fprintf(stderr, "export: %s: %s\n", t->name,
                    r ? "another dtype or shape" : "not in the reference");
            bad++;
        }
    }
    for (size_t i = 0; i < ref->n; i++)
        if (!st_find(f, ref->r[i].name)) {
            fprintf(stderr, "export: %s: missing\n", ref->r[i].name);
            bad++;
        }
    return bad;
}

/* Builds the model of the settings with random weights and statistics and
 * saves it to path (with AdamW moments when optim), as lejepa-train does.
 * The caller frees m. */
static void make_ckpt(const char *const *sets, const char *path, bool optim,
                      struct lejepa *m)
{
    char err[ERR_LEN];
    struct config cfg;
    config_defaults(&cfg);
    for (int i = 0; sets[i]; i++)
        CU_ASSERT_FATAL(config_set(&cfg, sets[i], err) == 0);
    CU_ASSERT_FATAL(config_validate(&cfg, err) == 0);
    struct lejepa_config lc;
    CU_ASSERT_FATAL(model_config_resolve(&lc, &cfg, N_CLASSES, err) == 0);
    lc.batch = 2;
    CU_ASSERT_FATAL(lejepa_init(m, &lc, err) == 0);
    uint64_t rng = 99;
    float *arenas[] = {m->p.data, m->p.state_data, m->p.m, m->p.v};
    size_t sizes[] = {m->p.learn.total, m->p.state.total, m->p.learn.total,
                      m->p.learn.total};
    for (int a = 0; a < 4; a++)
        for (size_t i = 0; i < sizes[a]; i++)
            arenas[a][i] = (float)(0.5 + testing_rand_uniform(&rng));
    char *text = config_to_string(&cfg);
    char step[16];
    snprintf(step, sizeof step, "%d", STEP);
    const char *keys[] = {"config", "step", "dataset.n_classes"};
    const char *values[] = {text, step, "3"};
    struct adamw o;
    adamw_init(&o, 0.9, 0.999, 1e-8);
    o.t = STEP;
    CU_ASSERT_FATAL(ckpt_save(path, &m->p, optim ? &o : NULL, keys, values, 3,
                              err) == 0);
    free(text);
}

/* The export holds exactly the model's backbone tensors with their values,
 * plus one num_batches_tracked = STEP per BatchNorm. */
static void check_values(const struct st_file *f, const struct lejepa *m)
{
    size_t expected = 0, differ = 0, bn = 0;
    char name[PARAMS_NAME_LEN];
    for (size_t i = 0; i < m->p.learn.n + m->p.state.n; i++) {
        int learn = i < m->p.learn.n;
        const struct params_entry *e = learn ? &m->p.learn.e[i]
                                             : &m->p.state.e[i - m->p.learn.n];
        const float *x = learn ? m->p.data + e->offset : m->p.state_data + e->offset;
        if (!export_map_name(e->name, name)) {
            CU_ASSERT(strncmp(e->name, "projector.", 10) == 0 ||
                      strncmp(e->name, "probe.", 6) == 0);
            continue;
        }
        bn += strstr(name, "running_mean") != NULL;
        expected++;
        const struct st_tensor *t = st_find(f, name);
        CU_ASSERT_FATAL(t != NULL);
        CU_ASSERT_FATAL(t->nbytes == e->numel * sizeof(float));
        differ += memcmp(t->data, x, t->nbytes) != 0;
    }
    CU_ASSERT_EQUAL(differ, 0);
    CU_ASSERT_EQUAL(f->n, expected + bn);
    size_t tracked = 0;
    for (size_t i = 0; i < f->n; i++) {
        const struct st_tensor *t = &f->tensors[i];
        CU_ASSERT(strncmp(t->name, "backbone.", 9) != 0);
        CU_ASSERT(strncmp(t->name, "optim.", 6) != 0);
        if (strstr(t->name, "num_batches_tracked")) {
            int64_t v;
            memcpy(&v, t->data, sizeof v);
            CU_ASSERT(t->dtype == ST_I64 && t->ndim == 0 && v == STEP);
            tracked++;
        }
    }
    CU_ASSERT_EQUAL(tracked, bn);
}

/* Exports the checkpoint of sets and opens the export (caller closes it
 * and frees m). */
static void export_case(const char *const *sets, const char *name,
                        struct lejepa *m, struct st_file *f)
{
    char ckpt[4200], out[4200], err[ERR_LEN];
    snprintf(ckpt, sizeof ckpt, "%s/%s-ckpt.safetensors", tmp, name);
    snprintf(out, sizeof out, "%s/%s-backbone.safetensors", tmp, name);
    make_ckpt(sets, ckpt, false, m);
    if (export_backbone(ckpt, out, err) != 0)
        fprintf(stderr, "%s\n", err);
    CU_ASSERT_FATAL(st_open(f, out, err) == 0);
    CU_ASSERT_STRING_EQUAL(st_meta(f, "format"), EXPORT_FORMAT);
    CU_ASSERT_STRING_EQUAL(st_meta(f, "version"), EXPORT_VERSION);
    CU_ASSERT_PTR_NOT_NULL(st_meta(f, "config"));
    remove(ckpt);
}

static const char *const resnet18_rgb[] = {
    "model.preset=resnet18", "model.stem=imagenet", "views.channels=3",
    "views.mean=0.485,0.456,0.406", "views.std=0.229,0.224,0.225",
    "views.global_size=32", "views.local_count=0", "model.projector=16,8",
    "optim.batch=2", "run.ticket_size=2", NULL,
};

static void test_resnet18_torchvision(void)
{
    struct ref ref;
    read_ref("export/resnet18_torchvision.txt", &ref);
    struct lejepa m;
    struct st_file f;
    export_case(resnet18_rgb, "resnet18", &m, &f);
    CU_ASSERT_STRING_EQUAL(st_meta(&f, "layout"), "torchvision");
    CU_ASSERT_EQUAL(compare(&f, &ref), 0);
    check_values(&f, &m);
    st_close(&f);
    lejepa_free(&m);
    free(ref.r);
}

static void test_resnet18_small_stem_gray(void)
{
    static const char *const sets[] = {
        "model.preset=resnet18", "model.stem=small", "views.channels=1",
        "views.global_size=28", "views.local_count=0", "model.projector=16,8",
        "optim.batch=2", "run.ticket_size=2", NULL,
    };
    struct ref ref;
    read_ref("export/resnet18_torchvision.txt", &ref);
    struct lejepa m;
    struct st_file f;
    export_case(sets, "resnet18_small", &m, &f);
    /* torchvision's own resnet18 differs in exactly one tensor ... */
    CU_ASSERT_EQUAL(compare(&f, &ref), 1);
    /* ... the stem's conv, once replaced as README.md says: 3x3, 1 channel */
    struct ref_row *conv1 = ref_find(&ref, "conv1.weight");
    CU_ASSERT_FATAL(conv1 != NULL);
    conv1->shape[1] = 1;
    conv1->shape[2] = conv1->shape[3] = 3;
    CU_ASSERT_EQUAL(compare(&f, &ref), 0);
    check_values(&f, &m);
    st_close(&f);
    lejepa_free(&m);
    free(ref.r);
}

static void test_vit_tiny_timm(void)
{
    static const char *const sets[] = {
        "model.backbone=vit", "model.preset=vit_tiny", "views.channels=3",
        "views.mean=0.485,0.456,0.406", "views.std=0.229,0.224,0.225",
        "views.global_size=224", "views.local_count=0", "model.projector=16,8",
        "optim.batch=2", "run.ticket_size=2", NULL,
    };
    struct ref ref;
    read_ref("export/vit_tiny_timm.txt", &ref);
    struct lejepa m;
    struct st_file f;
    export_case(sets, "vit_tiny", &m, &f);
    CU_ASSERT_STRING_EQUAL(st_meta(&f, "layout"), "timm");
    CU_ASSERT_EQUAL(compare(&f, &ref), 0);
    check_values(&f, &m);
    st_close(&f);
    lejepa_free(&m);
    free(ref.r);
}

static const char *const tiny[] = {
    "model.depths=2,2", "model.widths=8,16", "model.projector=32,16",
    "views.global_size=16", "views.local_size=8", "views.local_count=2",
    "optim.batch=8", "run.ticket_size=4", NULL,
};

static int run_lejepa(const char *args, char *out)
{
    return testing_run_program("tools/lejepa", args, out, OUT_CAP);
}

static char *slurp(const char *path, size_t *len)
{
    char err[ERR_LEN];
    char *s = util_read_file(path, len, err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    return s;
}

/* A run directory (checkpoint with AdamW moments, `latest`): the program
 * exports the same bytes from the directory, its `latest` and the file;
 * loading the export back restores the backbone and nothing else. */
static void test_run_dir_and_roundtrip(void)
{
    char run[4200], ckpt[4300], latest[4300], args[16000], err[ERR_LEN];
    snprintf(run, sizeof run, "%s/run", tmp);
    CU_ASSERT_FATAL(util_mkdir_p(run, err) == 0);
    snprintf(ckpt, sizeof ckpt, "%s/ckpt-%d.safetensors", run, STEP);
    snprintf(latest, sizeof latest, "%s/latest", run);
    struct lejepa m;
    make_ckpt(tiny, ckpt, true, &m);
    char name[64];
    int n = snprintf(name, sizeof name, "ckpt-%d.safetensors\n", STEP);
    CU_ASSERT_FATAL(util_write_file_atomic(latest, name, (size_t)n, err) == 0);
    const char *srcs[] = {run, latest, ckpt};
    char *bytes[3];
    size_t lens[3];
    char *out = xmalloc(OUT_CAP);
    for (int i = 0; i < 3; i++) {
        char dst[4300];
        snprintf(dst, sizeof dst, "%s/tiny-%d.safetensors", tmp, i);
        snprintf(args, sizeof args, "export --ckpt %s --out %s", srcs[i], dst);
        int rc = run_lejepa(args, out);
        if (rc != 0)
            fprintf(stderr, "lejepa export:\n%s\n", out);
        CU_ASSERT_EQUAL_FATAL(rc, 0);
        bytes[i] = slurp(dst, &lens[i]);
    }
    CU_ASSERT(lens[0] == lens[1] && memcmp(bytes[0], bytes[1], lens[0]) == 0);
    CU_ASSERT(lens[0] == lens[2] && memcmp(bytes[0], bytes[2], lens[0]) == 0);
    for (int i = 0; i < 3; i++)
        free(bytes[i]);

    char dst[4300];
    snprintf(dst, sizeof dst, "%s/tiny-0.safetensors", tmp);
    struct st_file f;
    CU_ASSERT_FATAL(st_open(&f, dst, err) == 0);
    check_values(&f, &m);
    CU_ASSERT_PTR_NULL(st_find(&f, "fc.weight"));
    st_close(&f);

    /* Back into a model whose every float is something else. */
    struct lejepa m2;
    CU_ASSERT_FATAL(lejepa_init(&m2, &m.c, err) == 0);
    for (size_t i = 0; i < m2.p.learn.total; i++)
        m2.p.data[i] = -1.0f;
    for (size_t i = 0; i < m2.p.state.total; i++)
        m2.p.state_data[i] = -1.0f;
    CU_ASSERT_FATAL(export_load_backbone(&m2.p, dst, err) == 0);
    size_t restored = 0, untouched = 0, wrong = 0;
    for (size_t i = 0; i < m.p.learn.n + m.p.state.n; i++) {
        int learn = i < m.p.learn.n;
        const struct params_entry *e = learn ? &m.p.learn.e[i]
                                             : &m.p.state.e[i - m.p.learn.n];
        const float *a = (learn ? m.p.data : m.p.state_data) + e->offset;
        const float *b = (learn ? m2.p.data : m2.p.state_data) + e->offset;
        if (export_map_name(e->name, name)) {
            wrong += memcmp(a, b, e->numel * sizeof *a) != 0;
            restored++;
        } else {
            untouched += b[0] == -1.0f;
        }
    }
    CU_ASSERT_EQUAL(wrong, 0);
    CU_ASSERT(restored > 0);
    CU_ASSERT_EQUAL(untouched, m.p.learn.n + m.p.state.n - restored);
    lejepa_free(&m2);
    lejepa_free(&m);
    free(out);
}

static void test_bad_inputs(void)
{
    char path[4300], dst[4300], args[16000], err[ERR_LEN];
    char *out = xmalloc(OUT_CAP);
    /* not a checkpoint: exit 2 naming it, nothing written */
    snprintf(path, sizeof path, "%s/bad.safetensors", tmp);
    snprintf(dst, sizeof dst, "%s/bad-out.safetensors", tmp);
    CU_ASSERT_FATAL(util_write_file_atomic(path, "not a checkpoint", 16, err) == 0);
    snprintf(args, sizeof args, "export --ckpt %s --out %s", path, dst);
    CU_ASSERT_EQUAL(run_lejepa(args, out), 2);
    CU_ASSERT(strstr(out, path) != NULL);
    CU_ASSERT(access(dst, F_OK) != 0);
    /* a run directory without `latest` */
    snprintf(args, sizeof args, "export --ckpt %s --out %s", tmp, dst);
    CU_ASSERT_EQUAL(run_lejepa(args, out), 2);
    CU_ASSERT(strstr(out, "latest") != NULL);
    CU_ASSERT(access(dst, F_OK) != 0);
    /* an export of another model is refused and changes nothing */
    struct lejepa m;
    snprintf(path, sizeof path, "%s/wide.safetensors", tmp);
    static const char *const wide[] = {
        "model.depths=2,2", "model.widths=8,32", "model.projector=32,16",
        "views.global_size=16", "optim.batch=8", "run.ticket_size=4", NULL,
    };
    make_ckpt(wide, path, false, &m);
    float before = m.p.data[0];
    const char *fixture = testing_fixture("export/tiny_backbone.safetensors");
    CU_ASSERT_EQUAL(export_load_backbone(&m.p, fixture, err), -1);
    CU_ASSERT(strstr(err, "layer2.0.conv1.weight") != NULL);
    CU_ASSERT_EQUAL(m.p.data[0], before);
    /* a checkpoint is not an export */
    CU_ASSERT_EQUAL(export_load_backbone(&m.p, path, err), -1);
    CU_ASSERT(strstr(err, EXPORT_FORMAT) != NULL);
    lejepa_free(&m);
    free(out);
}

/* The committed tiny export and PyTorch's embeddings of it: the engine,
 * given the export's weights, embeds the same inputs alike. */
static void test_pytorch_embeddings(void)
{
    char err[ERR_LEN], path[4096];
    snprintf(path, sizeof path, "%s", testing_fixture("export/tiny_backbone.safetensors"));
    struct st_file ex, ref;
    CU_ASSERT_FATAL(st_open(&ex, path, err) == 0);
    CU_ASSERT_FATAL(st_open(&ref, testing_fixture("export/tiny_torch.safetensors"),
                            err) == 0);
    struct config cfg;
    config_defaults(&cfg);
    CU_ASSERT_FATAL(config_load_string(&cfg, st_meta(&ex, "config"), "fixture",
                                       err) == 0);
    struct lejepa_config lc;
    CU_ASSERT_FATAL(model_config_resolve(&lc, &cfg, N_CLASSES, err) == 0);
    lc.batch = 2;
    struct lejepa m;
    CU_ASSERT_FATAL(lejepa_init(&m, &lc, err) == 0);
    CU_ASSERT_FATAL(export_load_backbone(&m.p, path, err) == 0);
    const struct st_tensor *in = st_find(&ref, "input"), *emb = st_find(&ref, "embedding");
    CU_ASSERT_FATAL(in && emb && in->ndim == 4 && emb->ndim == 2);
    const int N = (int)in->shape[0], D = m.emb_dim;
    CU_ASSERT_FATAL(emb->shape[0] == N && emb->shape[1] == D);
    CU_ASSERT_FATAL(in->shape[1] == lejepa_in_channels(&lc) &&
                    in->shape[2] == lc.global_size && in->shape[3] == lc.global_size);
    struct lejepa_eval ev;
    lejepa_eval_init(&ev, &m, N);
    memcpy(lejepa_eval_input(&ev), in->data, in->nbytes);
    const float *got = lejepa_eval_forward(&ev);
    const float *want = emb->data;
    double worst = 0, largest = 0;
    for (size_t k = 0; k < (size_t)N * D; k++) {
        double d = fabs(got[k] - want[k]) / (1.0 + fabs(want[k]));
        worst = d > worst ? d : worst;
        largest = fabs(want[k]) > largest ? fabs(want[k]) : largest;
    }
    if (worst > EMB_TOL)
        fprintf(stderr, "embeddings differ from PyTorch's by %g\n", worst);
    CU_ASSERT(worst <= EMB_TOL);
    CU_ASSERT(largest > 0.1);       /* not a vacuous all-zero comparison */
    lejepa_eval_free(&ev);
    lejepa_free(&m);
    st_close(&ref);
    st_close(&ex);
}

int main(void)
{
    static const struct testing_case cases[] = {
        {"resnet18_torchvision", test_resnet18_torchvision},
        {"resnet18_small_stem_gray", test_resnet18_small_stem_gray},
        {"vit_tiny_timm", test_vit_tiny_timm},
        {"run_dir_and_roundtrip", test_run_dir_and_roundtrip},
        {"bad_inputs", test_bad_inputs},
        {"pytorch_embeddings", test_pytorch_embeddings},
        {NULL, NULL},
    };
    tmp = testing_tmpdir();
    int rc = testing_run("export", cases);
    testing_rmtree(tmp);
    free(tmp);
    return rc;
}
