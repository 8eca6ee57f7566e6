/*
 * test_imgdir.c: the generated image folder of test_imgdir.h. Each image is
 * a blob of one brightness on noise, so classes differ a little.
 */
#include <stdio.h>
#include <stdlib.h>

#include <vips/vips.h>

#include "test_imgdir.h"
#include "testing.h"
#include "util.h"

static void write_png(const char *path, int w, int h, int cls, uint64_t *rng)
{
    uint8_t *px = xmalloc((size_t)w * h);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int inside = abs(x - w / 2) < w / 4 && abs(y - h / 2) < h / 4;
            int noise = (int)(testing_rand_u64(rng) % 64);
            px[y * w + x] = (uint8_t)(inside ? 100 + 40 * cls + noise / 2 : noise);
        }
    VipsImage *im = vips_image_new_from_memory_copy(px, (size_t)w * h, w, h, 1,
                                                    VIPS_FORMAT_UCHAR);
    CHECK(im);
    CHECK(vips_pngsave(im, path, NULL) == 0);
    g_object_unref(im);
    free(px);
}

void imgdir_make(const char *root, int classes, int per_class, int per_class_val,
                 int w, int h, uint64_t seed)
{
    char path[4400], err[ERR_LEN];
    uint64_t rng = seed;
    for (int split = 0; split < 2; split++) {
        const char *sp = split ? "val" : "train";
        for (int c = 0; c < classes; c++) {
            snprintf(path, sizeof path, "%s/%s/c%d", root, sp, c);
            CHECK(util_mkdir_p(path, err) == 0);
            int n = split ? per_class_val : per_class;
            for (int i = 0; i < n; i++) {
                snprintf(path, sizeof path, "%s/%s/c%d/%03d.png", root, sp, c, i);
                write_png(path, w, h, c, &rng);
            }
        }
    }
}
