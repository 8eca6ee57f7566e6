/*
 * test_vit.c: the ViT beyond its PyTorch match (test_lejepa_ref.c): central
 * finite differences through the graph's token ops (CLS pooling with and
 * without the patch mean, LayerNorm, token linear, GELU) up to the patch
 * embedding's parameters; the forward flop count; the eval forward's
 * feature map and CLS attention; the [model] keys turned into a
 * vit_config (presets, overrides, errors that name the key, the JSON of
 * the PyTorch companions); and every shipped recipe resolving.
 */
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "lejepa.h"
#include "lejepa_cases.h"
#include "model_config.h"
#include "nn.h"
#include "testing.h"
#include "util.h"
#include "vit.h"

#define FD_STEP 1e-2
#define FD_RTOL 2e-2

/* A small token graph: image (B,C,S,S) -> patch embed -> LN -> linear ->
 * GELU -> cls pool; loss = sum(r * emb) with fixed weights r. */
struct fd_model {
    struct params p;
    struct graph g;
    int in, emb;
    float *r;
};

static void fd_model_init(struct fd_model *m, bool cls_mean, uint64_t *seed)
{
    memset(m, 0, sizeof *m);
    const int B = 3, C = 2, S = 7, P = 3, D = 6, G0 = 2; /* 3x3 grid: resized */
    graph_init(&m->g, &m->p, B);
    m->in = graph_input(&m->g, C, S, S);
    int x = graph_patch_embed(&m->g, m->in, "vit", P, D, G0, PARAMS_GROUP_ENCODER);
    x = graph_layernorm(&m->g, x, "vit.norm", NN_LN_EPS_VIT, PARAMS_GROUP_ENCODER);
    x = graph_gelu(&m->g, graph_token_linear(&m->g, x, "vit.fc", 5,
                                             PARAMS_GROUP_ENCODER));
    m->emb = graph_cls_pool(&m->g, x, cls_mean);
    params_alloc(&m->p);
    params_init(&m->p, 3);
    /* nonzero cls, pos and LN affine so that every path carries gradient */
    for (size_t i = 0; i < m->p.learn.total; i++)
        m->p.data[i] += (float)(0.3 * testing_rand_normal(seed));
    graph_alloc(&m->g, true);
    size_t nin = graph_numel(&m->g, m->in), nemb = graph_numel(&m->g, m->emb);
    float *x0 = graph_act(&m->g, m->in);
    for (size_t i = 0; i < nin; i++)
        x0[i] = (float)testing_rand_normal(seed);
    m->r = xmalloc(nemb * sizeof(float));
    for (size_t i = 0; i < nemb; i++)
        m->r[i] = (float)testing_rand_normal(seed);
}

static double fd_loss(struct fd_model *m)
{
    graph_forward(&m->g, true);
    const float *e = graph_act(&m->g, m->emb);
    double s = 0;
    for (size_t i = 0; i < graph_numel(&m->g, m->emb); i++)
        s += (double)m->r[i] * e[i];
    return s;
}

static void fd_model_free(struct fd_model *m)
{
    graph_free(&m->g);
    params_free(&m->p);
    free(m->r);
}

/* Central differences of every parameter's gradient (a few entries of
 * each tensor) through m's graph in training mode. */
static void check_fd_model(struct fd_model *m_)
{
    struct fd_model m = *m_;
    memset(m.p.grad, 0, m.p.learn.total * sizeof(float));
    fd_loss(&m);
    graph_zero_out_grads(&m.g);
    memcpy(graph_dact(&m.g, m.emb), m.r, graph_numel(&m.g, m.emb) * sizeof(float));
    graph_backward(&m.g, true);
    int checked = 0;
    for (size_t i = 0; i < m.p.learn.n; i++) {
        const struct params_entry *e = &m.p.learn.e[i];
        double worst = 0, scale = 1e-3;
        for (size_t k = 0; k < e->numel; k++)
            scale = fmax(scale, fabs(m.p.grad[e->offset + k]));
        /* a few entries per tensor, spread over it */
        for (size_t k = 0; k < e->numel; k += 1 + e->numel / 7) {
            float *w = m.p.data + e->offset + k;
            float w0 = *w;
            *w = (float)(w0 + FD_STEP);
            double lp = fd_loss(&m);
            *w = (float)(w0 - FD_STEP);
            double lm = fd_loss(&m);
            *w = w0;
            double fd = (lp - lm) / (2 * FD_STEP);
            worst = fmax(worst, fabs(fd - m.p.grad[e->offset + k]) / scale);
            checked++;
        }
        if (worst > FD_RTOL)
            fprintf(stderr, "\n  %s: finite-difference error %.3g\n", e->name, worst);
        CU_ASSERT(worst <= FD_RTOL);
    }
    CU_ASSERT(checked > 20);
}

static void check_fd(bool cls_mean)
{
    uint64_t seed = cls_mean ? 21 : 20;
    struct fd_model m;
    fd_model_init(&m, cls_mean, &seed);
    CU_ASSERT_EQUAL(m.g.t[m.emb].C, cls_mean ? 10 : 5);
    check_fd_model(&m);
    fd_model_free(&m);
}

/* Stochastic depth: patch embed -> x, then x + drop(linear(LN(x))) with
 * p = 0.5 over 64 images, CLS pooled. In training each image's branch is
 * either dropped (the output is x, bit for bit) or doubled (x + 2 y, y the
 * branch as an eval pass computes it); about half of them drop; the masks
 * are a function of (seed, step); finite differences hold through it. */
static void test_drop_path(void)
{
    uint64_t seed = 31;
    struct fd_model m;
    memset(&m, 0, sizeof m);
    const int B = 64, C = 1, S = 6, P = 3, D = 4;
    graph_init(&m.g, &m.p, B);
    m.in = graph_input(&m.g, C, S, S);
    int x = graph_patch_embed(&m.g, m.in, "vit", P, D, 2, PARAMS_GROUP_ENCODER);
    int y = graph_layernorm(&m.g, x, "vit.norm", NN_LN_EPS_VIT, PARAMS_GROUP_ENCODER);
    y = graph_token_linear(&m.g, y, "vit.fc", D, PARAMS_GROUP_ENCODER);
    int sum = graph_add_drop(&m.g, y, x, 0.5f);
    const int drop_op = m.g.n_ops - 1;
    m.emb = graph_cls_pool(&m.g, sum, false);
    params_alloc(&m.p);
    params_init(&m.p, 5);
    for (size_t i = 0; i < m.p.learn.total; i++)
        m.p.data[i] += (float)(0.3 * testing_rand_normal(&seed));
    graph_alloc(&m.g, true);
    float *x0 = graph_act(&m.g, m.in);
    for (size_t i = 0; i < graph_numel(&m.g, m.in); i++)
        x0[i] = (float)testing_rand_normal(&seed);
    size_t nemb = graph_numel(&m.g, m.emb), row = graph_numel(&m.g, sum) / B;
    m.r = xmalloc(nemb * sizeof(float));
    for (size_t i = 0; i < nemb; i++)
        m.r[i] = (float)testing_rand_normal(&seed);
    m.g.drop_seed = 99;
    m.g.drop_step = 7;

    /* the eval pass: x + y, and x itself */
    graph_forward(&m.g, false);
    float *plain = xmalloc(B * row * sizeof(float)), *xs = xmalloc(B * row * sizeof(float));
    memcpy(plain, graph_act(&m.g, sum), B * row * sizeof(float));
    memcpy(xs, graph_act(&m.g, x), B * row * sizeof(float));
    graph_forward(&m.g, true);
    const float *scale = m.g.act + m.g.ops[drop_op].save, *out = graph_act(&m.g, sum);
    int dropped = 0, bad = 0;
    float first[64];
    for (int b = 0; b < B; b++) {
        first[b] = scale[b];
        CU_ASSERT(scale[b] == 0.0f || scale[b] == 2.0f);
        dropped += scale[b] == 0.0f;
        for (size_t i = 0; i < row; i++) {
            size_t k = (size_t)b * row + i;
            float want = xs[k] + scale[b] * (plain[k] - xs[k]);
            bad += scale[b] == 0.0f ? out[k] != xs[k] : fabsf(out[k] - want) > 1e-5f;
        }
    }
    printf("(%d of %d dropped) ", dropped, B);
    CU_ASSERT(dropped >= 20 && dropped <= 44);
    CU_ASSERT_EQUAL(bad, 0);
    /* the same (seed, step): the same masks; another step: others */
    graph_forward(&m.g, true);
    CU_ASSERT_EQUAL(memcmp(first, scale, sizeof first), 0);
    m.g.drop_step = 8;
    graph_forward(&m.g, true);
    CU_ASSERT_NOT_EQUAL(memcmp(first, scale, sizeof first), 0);
    check_fd_model(&m);
    free(plain);
    free(xs);
    fd_model_free(&m);
}

static void test_fd_cls(void) { check_fd(false); }
static void test_fd_cls_mean(void) { check_fd(true); }

/* Multiply-adds: patch embedding (the CLS row included), per block qkv,
 * q k^T and probs v, proj, fc1, fc2. */
static void test_flops(void)
{
    const struct lejepa_case *lc = &lejepa_cases[2];
    CU_ASSERT_EQUAL_FATAL(lc->c.backbone, LEJEPA_BACKBONE_VIT);
    struct params p = {0};
    struct graph g;
    const struct vit_config *v = &lc->c.vit;
    const int B = 2, S = lc->c.global_size;
    graph_init(&g, &p, B);
    int in = graph_input(&g, v->in_channels, S, S);
    struct vit_out vo;
    vit_build(&g, in, v, S, "backbone", &vo);
    double T = 1 + vo.GH * vo.GW, D = v->dim, H = (int)(v->dim * v->mlp_ratio);
    double want = 2 * T * D * v->in_channels * v->patch * v->patch +
                  v->depth * (2 * T * D * 3 * D + 4 * T * T * D +
                              2 * T * D * D + 4 * T * D * H);
    CU_ASSERT_DOUBLE_EQUAL(graph_forward_flops(&g), B * want, 1e-6 * B * want);
    CU_ASSERT_STRING_EQUAL(graph_kind_name(GRAPH_ATTENTION), "attention");
    CU_ASSERT_STRING_EQUAL(graph_kind_name(GRAPH_CLS_POOL), "cls_pool");
    CU_ASSERT_EQUAL(g.ops[vo.attn_op].kind, GRAPH_ATTENTION);
    graph_free(&g);
    free(p.learn.e);
    free(p.state.e);
}

/* The eval forward's feature map is the patch tokens channels-first and the
 * CLS attention rows are probabilities over the patches (plus the CLS). */
static void test_eval_outputs(void)
{
    const struct lejepa_case *lc = &lejepa_cases[3];
    CU_ASSERT_EQUAL_FATAL(lc->c.backbone, LEJEPA_BACKBONE_VIT);
    char err[ERR_LEN];
    struct lejepa m;
    CU_ASSERT_EQUAL_FATAL(lejepa_init(&m, &lc->c, err), 0);
    struct lejepa_eval ev;
    const int B = 3;
    lejepa_eval_init(&ev, &m, B);
    uint64_t seed = 9;
    float *x = lejepa_eval_input(&ev);
    for (size_t i = 0; i < graph_numel(&ev.g, ev.in); i++)
        x[i] = (float)testing_rand_normal(&seed);
    const float *emb = lejepa_eval_forward(&ev);
    const int D = lc->c.vit.dim, G = (lc->c.global_size + 3) / 4, NH = lc->c.vit.heads;
    CU_ASSERT_FATAL(ev.feat_c == D && ev.feat_h == G && ev.feat_w == G);
    CU_ASSERT_EQUAL(m.emb_dim, 2 * D);
    float *feat = xmalloc((size_t)B * D * G * G * sizeof(float));
    float *attn = xmalloc((size_t)B * NH * G * G * sizeof(float));
    for (int b = 0; b < B; b++)
        lejepa_eval_featmap(&ev, b, feat + (size_t)b * D * G * G,
                            attn + (size_t)b * NH * G * G);
    const float *tok = graph_act(&ev.g, ev.feat);
    const int T = 1 + G * G;
    double diff = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < G * G; t++)
            for (int d = 0; d < D; d++)
                diff = fmax(diff, fabs(feat[((size_t)b * D + d) * G * G + t] -
                                       tok[((size_t)b * T + 1 + t) * D + d]));
    CU_ASSERT(diff == 0);
    /* cls_mean: the second half of the embedding is the mean of the map */
    for (int d = 0; d < D; d++) {
        double s = 0;
        for (int t = 0; t < G * G; t++)
            s += feat[(size_t)d * G * G + t];
        CU_ASSERT_DOUBLE_EQUAL(emb[D + d], s / (G * G), 1e-5);
    }
    for (int r = 0; r < B * NH; r++) {
        double s = 0;
        for (int t = 0; t < G * G; t++) {
            CU_ASSERT(attn[(size_t)r * G * G + t] >= 0);
            s += attn[(size_t)r * G * G + t];
        }
        CU_ASSERT(s > 0 && s < 1 + 1e-5);
    }
    free(feat);
    free(attn);
    lejepa_eval_free(&ev);
    lejepa_free(&m);
}

/* The official probe's features (CLS of the last two blocks through the
 * final norm) against two other models: the second half is the embedding
 * of the same model with CLS pooling, the first half that of a copy with
 * the last block removed (every other weight copied by name). */
static void test_cls_last2(void)
{
    const struct lejepa_case *lc = &lejepa_cases[2];
    CU_ASSERT_EQUAL_FATAL(lc->c.backbone, LEJEPA_BACKBONE_VIT);
    CU_ASSERT_FATAL(lc->c.vit.depth >= 2);
    char err[ERR_LEN];
    struct lejepa_config c = lc->c, c1 = lc->c;
    c.vit.embed = c1.vit.embed = VIT_EMBED_CLS;
    c1.vit.depth--;
    struct lejepa m, m1;
    CU_ASSERT_EQUAL_FATAL(lejepa_init(&m, &c, err), 0);
    CU_ASSERT_EQUAL_FATAL(lejepa_init(&m1, &c1, err), 0);
    CU_ASSERT_EQUAL(lejepa_features_dim(&m, LEJEPA_FEATURES_CLS_LAST2, err), 2 * c.vit.dim);
    for (size_t i = 0; i < m1.p.learn.n; i++) {
        int j = params_find(&m.p.learn, m1.p.learn.e[i].name);
        CU_ASSERT_FATAL(j >= 0);
        memcpy(params_data(&m1.p, (int)i), params_data(&m.p, j),
               m1.p.learn.e[i].numel * sizeof(float));
    }
    const int B = 3, D = c.vit.dim;
    struct lejepa_eval ev, ev_cls, ev1;
    lejepa_eval_init_features(&ev, &m, B, LEJEPA_FEATURES_CLS_LAST2);
    lejepa_eval_init(&ev_cls, &m, B);
    lejepa_eval_init(&ev1, &m1, B);
    uint64_t seed = 5;
    float *x = lejepa_eval_input(&ev);
    size_t n = graph_numel(&ev.g, ev.in);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)testing_rand_normal(&seed);
    memcpy(lejepa_eval_input(&ev_cls), x, n * sizeof(float));
    memcpy(lejepa_eval_input(&ev1), x, n * sizeof(float));
    const float *f = lejepa_eval_forward(&ev);
    const float *last = lejepa_eval_forward(&ev_cls);
    const float *prev = lejepa_eval_forward(&ev1);
    double dl = 0, dp = 0, scale = 0;
    for (int b = 0; b < B; b++)
        for (int d = 0; d < D; d++) {
            dp = fmax(dp, fabs(f[(size_t)b * 2 * D + d] - prev[(size_t)b * D + d]));
            dl = fmax(dl, fabs(f[(size_t)b * 2 * D + D + d] - last[(size_t)b * D + d]));
            scale = fmax(scale, fabs(last[(size_t)b * D + d]));
        }
    CU_ASSERT(scale > 0.1);
    CU_ASSERT(dl == 0);
    CU_ASSERT(dp < 1e-5 * scale);
    /* the two halves differ: the last block changed the CLS */
    CU_ASSERT(fabs(f[0] - f[D]) + fabs(f[1] - f[D + 1]) > 1e-4);
    struct lejepa r;
    struct lejepa_config cr = lejepa_cases[0].c;
    CU_ASSERT_EQUAL_FATAL(lejepa_init(&r, &cr, err), 0);
    CU_ASSERT_EQUAL(lejepa_features_dim(&r, LEJEPA_FEATURES_CLS_LAST2, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "ViT"));
    lejepa_free(&r);
    lejepa_eval_free(&ev);
    lejepa_eval_free(&ev_cls);
    lejepa_eval_free(&ev1);
    lejepa_free(&m);
    lejepa_free(&m1);
}

static int resolve(const char *ini, struct lejepa_config *out, char *err)
{
    struct config c;
    config_defaults(&c);
    if (config_load_string(&c, ini, "test", err) != 0 ||
        config_validate(&c, err) != 0)
        return -1;
    return model_config_resolve(out, &c, 10, err);
}

static void test_presets_and_errors(void)
{
    struct lejepa_config lc;
    char err[ERR_LEN] = "";
    CU_ASSERT_EQUAL_FATAL(resolve("[model]\nbackbone = vit\npreset = vit_tiny\n",
                                  &lc, err), 0);
    /* ResNet shape keys do not concern a ViT, even when they disagree */
    CU_ASSERT_EQUAL(resolve("[model]\nbackbone = vit\npreset = vit_tiny\n"
                            "widths = 8\ndepths = 1,1\n", &lc, err), 0);
    CU_ASSERT_EQUAL(resolve("[model]\nwidths = 8\ndepths = 1,1\n", &lc, err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "model.depths"));
    CU_ASSERT_EQUAL_FATAL(resolve("[model]\nbackbone = vit\npreset = vit_tiny\n",
                                  &lc, err), 0);
    CU_ASSERT_EQUAL(lc.backbone, LEJEPA_BACKBONE_VIT);
    CU_ASSERT(lc.vit.patch == 16 && lc.vit.dim == 192 && lc.vit.depth == 12 &&
              lc.vit.heads == 3 && lc.vit.in_channels == 1);
    CU_ASSERT_DOUBLE_EQUAL(lc.vit.mlp_ratio, 4.0, 0);
    CU_ASSERT_EQUAL(lc.vit.embed, VIT_EMBED_CLS);
    CU_ASSERT_EQUAL_FATAL(resolve("[model]\nbackbone = vit\npreset = vit_small\n",
                                  &lc, err), 0);
    CU_ASSERT(lc.vit.dim == 384 && lc.vit.heads == 6 && lc.vit.depth == 12);
    CU_ASSERT_EQUAL_FATAL(resolve("[model]\nbackbone = vit\npreset = vit_base\n"
                                  "depth = 4\npatch = 7\nembed = cls_mean\n",
                                  &lc, err), 0);
    CU_ASSERT(lc.vit.dim == 768 && lc.vit.heads == 12 && lc.vit.depth == 4 &&
              lc.vit.patch == 7 && lc.vit.embed == VIT_EMBED_CLS_MEAN);
    char json[2048];
    lejepa_config_json(json, sizeof json, &lc, NULL);
    CU_ASSERT_PTR_NOT_NULL(strstr(json, "\"backbone\":\"vit\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(json, "\"patch\":7,\"dim\":768,\"depth\":4,"
                                        "\"heads\":12,\"mlp_ratio\":4,"
                                        "\"embed\":\"cls_mean\""));
    CU_ASSERT_PTR_NULL(strstr(json, "\"stem\""));     /* no ResNet keys */
    CU_ASSERT_PTR_NULL(strstr(json, "\"widths\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(json, "\"sigreg_debias\":false"));
    CU_ASSERT_FALSE(lc.sigreg_debias);
    CU_ASSERT_EQUAL_FATAL(resolve("[loss]\nsigreg_debias = true\n", &lc, err), 0);
    CU_ASSERT_TRUE(lc.sigreg_debias);
    lejepa_config_json(json, sizeof json, &lc, NULL);
    CU_ASSERT_PTR_NOT_NULL(strstr(json, "\"sigreg_debias\":true"));
    CU_ASSERT_EQUAL_FATAL(resolve("[model]\ndepths = 1,1\nwidths = 8,16\n", &lc,
                                  err), 0);
    lejepa_config_json(json, sizeof json, &lc, NULL);
    CU_ASSERT_PTR_NOT_NULL(strstr(json, "\"backbone\":\"resnet\""));
    CU_ASSERT_PTR_NULL(strstr(json, "\"patch\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(json, "\"stem\":\"small\",\"depths\":[1,1],"
                                        "\"widths\":[8,16]"));

    static const struct {
        const char *ini, *msg;
    } bad[] = {
        {"[model]\nbackbone = vit\ndim = 12\ndepth = 2\nheads = 3\n", "model.patch"},
        {"[model]\nbackbone = vit\npatch = 4\ndepth = 2\nheads = 3\n", "model.dim"},
        {"[model]\nbackbone = vit\npatch = 4\ndim = 12\nheads = 3\n", "model.depth"},
        {"[model]\nbackbone = vit\npatch = 4\ndim = 12\ndepth = 2\n", "model.heads"},
        {"[model]\nbackbone = vit\npreset = vit_tiny\nheads = 5\n",
         "model.heads = 5 does not divide model.dim = 192"},
        {"[model]\nbackbone = resnet\npreset = vit_tiny\n",
         "model.preset = vit_tiny does not fit model.backbone = resnet"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        CU_ASSERT_EQUAL(resolve(bad[i].ini, &lc, err), -1);
        if (!strstr(err, bad[i].msg))
            fprintf(stderr, "\n  expected \"%s\" in \"%s\"\n", bad[i].msg, err);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, bad[i].msg));
    }
}

/* Every recipe shipped in configs/ loads, validates and resolves to an
 * engine config (ResNet and ViT alike). */
static void test_recipes_resolve(void)
{
    const char *root = getenv("LEJEPA_SOURCE_ROOT");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/configs", root ? root : ".");
    DIR *d = opendir(dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    int vits = 0, seen = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 4, ".ini") != 0)
            continue;
        char path[8192], err[ERR_LEN] = "";
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct config c;
        config_defaults(&c);
        int rc = config_load_file(&c, path, err);
        struct lejepa_config lc;
        if (rc == 0)
            rc = config_validate(&c, err);
        if (rc == 0)
            rc = model_config_resolve(&lc, &c, 10, err);
        if (rc != 0)
            fprintf(stderr, "\n  %s: %s\n", e->d_name, err);
        CU_ASSERT_EQUAL(rc, 0);
        if (rc == 0 && lc.backbone == LEJEPA_BACKBONE_VIT)
            vits++;
        seen++;
    }
    closedir(d);
    CU_ASSERT(seen >= 5);   /* fashion-mnist, bench-*, imagenet-* */
    CU_ASSERT(vits >= 2);   /* bench-vit, imagenet-vit-small */
}

int main(void)
{
    static const struct testing_case cases[] = {
        {"finite differences through CLS pooling", test_fd_cls},
        {"finite differences through CLS + patch mean", test_fd_cls_mean},
        {"stochastic depth: masks, outputs, gradients", test_drop_path},
        {"forward flops", test_flops},
        {"eval feature map and CLS attention", test_eval_outputs},
        {"official probe features: CLS of the last two blocks", test_cls_last2},
        {"presets, overrides and errors", test_presets_and_errors},
        {"shipped recipes resolve", test_recipes_resolve},
        {NULL, NULL},
    };
    return testing_run("vit", cases);
}
