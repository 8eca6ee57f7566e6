/*
 * test_nn_pixels.c: the one pixel normalisation. Values by hand, the
 * optimised kernel against its double-precision _ref over every byte value
 * and several channel statistics, and the layout (image-major, then channel).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "nn.h"
#include "testing.h"

static void test_pixels_by_hand(void)
{
    /* 1 image, 2 channels of 2 pixels: (x/255 - mean)/std */
    const uint8_t in[4] = {0, 255, 51, 102};
    const float mean[2] = {0.5f, 0.2f}, std[2] = {0.25f, 0.4f};
    float out[4];
    nn_pixels_normalize(out, in, mean, std, 1, 2, 2);
    const float want[4] = {-2.0f, 2.0f, 0.0f, 0.5f};
    for (int i = 0; i < 4; i++)
        CU_ASSERT_DOUBLE_EQUAL(out[i], want[i], 1e-6);
}

static void test_pixels_match_ref(void)
{
    /* every byte value in every channel, 3 images, 3 channels */
    const int C = 3;
    const size_t images = 3, plane = 256;
    uint8_t *in = malloc(images * C * plane);
    float *a = malloc(images * C * plane * sizeof *a);
    float *b = malloc(images * C * plane * sizeof *b);
    for (size_t i = 0; i < images * C * plane; i++)
        in[i] = (uint8_t)((i * 7 + i / plane) & 0xff);
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    nn_pixels_normalize(a, in, mean, std, images, C, plane);
    nn_pixels_normalize_ref(b, in, mean, std, images, C, plane);
    double worst = 0;
    for (size_t i = 0; i < images * C * plane; i++) {
        double d = fabs((double)a[i] - b[i]) / (1.0 + fabs(b[i]));
        worst = d > worst ? d : worst;
    }
    CU_ASSERT(worst < 1e-6);
    /* channel c of image i starts at (i*C + c)*plane: its zero byte maps to
     * -mean[c]/std[c] */
    for (size_t i = 0; i < images; i++)
        for (int c = 0; c < C; c++) {
            size_t at = (i * C + (size_t)c) * plane;
            for (size_t k = 0; k < plane; k++)
                if (in[at + k] == 0)
                    CU_ASSERT_DOUBLE_EQUAL(b[at + k], -mean[c] / std[c], 1e-6);
        }
    free(in), free(a), free(b);
}

int main(void)
{
    static const struct testing_case cases[] = {
        {"by hand", test_pixels_by_hand},
        {"optimised matches _ref", test_pixels_match_ref},
        {NULL, NULL},
    };
    return testing_run("nn_pixels", cases);
}
