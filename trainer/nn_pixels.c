/*
 * nn_pixels.c: uint8 pixels to the network's float input, (x / 255 - mean[c])
 * / std[c]. The one normalisation of the project: the training step, the eval
 * snapshot's forward and `lejepa embed` all call it, so a model sees the same
 * numbers wherever its images come from. No gradient: pixels are data.
 */
#include "nn.h"

void nn_pixels_normalize(float *out, const uint8_t *inp, const float *mean,
                         const float *std, size_t images, int C, size_t plane)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < images; i++)
        for (int c = 0; c < C; c++) {
            /* one multiply-add per pixel instead of a divide */
            const float scale = 1.0f / (255.0f * std[c]);
            const float shift = mean[c] / std[c];
            const uint8_t *src = inp + (i * (size_t)C + (size_t)c) * plane;
            float *dst = out + (i * (size_t)C + (size_t)c) * plane;
            for (size_t k = 0; k < plane; k++)
                dst[k] = (float)src[k] * scale - shift;
        }
}

void nn_pixels_normalize_ref(float *out, const uint8_t *inp, const float *mean,
                             const float *std, size_t images, int C,
                             size_t plane)
{
    for (size_t i = 0; i < images; i++)
        for (int c = 0; c < C; c++)
            for (size_t k = 0; k < plane; k++) {
                size_t at = (i * (size_t)C + (size_t)c) * plane + k;
                out[at] = (float)(((double)inp[at] / 255.0 - mean[c]) / std[c]);
            }
}
