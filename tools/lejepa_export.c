/*
 * lejepa_export.c: `lejepa export`: a checkpoint's backbone as a safetensors
 * file named as torchvision (ResNet) or timm (ViT) name their tensors, for
 * load_state_dict(strict=True) in PyTorch. Only the command line lives
 * here; the mapping is trainer/export.c, which the trainer calls too.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export.h"
#include "lejepa_cli.h"
#include "safetensors.h"
#include "util.h"

static void usage(FILE *out)
{
    fprintf(out,
        "usage: lejepa export --ckpt RUN|FILE --out backbone.safetensors\n"
        "\n"
        "Writes the backbone's weights of a lejepa-train checkpoint, and nothing\n"
        "else, named as torchvision's resnet (conv1.weight, bn1.running_mean,\n"
        "layer1.0.conv1.weight, ...) or timm's VisionTransformer (cls_token,\n"
        "pos_embed, blocks.0.attn.qkv.weight, ...) name them: no projector, probe\n"
        "or optimizer state, and no classifier (torchvision's fc, timm's head).\n"
        "BatchNorm's num_batches_tracked holds the checkpoint's step.\n"
        "\n"
        "  --ckpt RUN|FILE   a checkpoint file, a run directory (its newest\n"
        "                    checkpoint, as named by RUN/latest) or RUN/latest\n"
        "  --out FILE        the safetensors file to write (atomically)\n"
        "\n"
        "In PyTorch: m = torchvision.models.resnet18(); m.fc = torch.nn.Identity();\n"
        "m.load_state_dict(safetensors.torch.load_file(FILE)) (see README.md for\n"
        "the small stem, 1-channel inputs and timm).\n"
        "\n"
        "Exit status: 0 written, 2 on any error (nothing written).\n");
}

int lejepa_export_main(int argc, char **argv)
{
    static const struct option longs[] = {
        {"ckpt", required_argument, NULL, 'c'},
        {"out", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *ckpt = NULL, *out = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (c) {
        case 'c': ckpt = optarg; break;
        case 'o': out = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc)
        die("export: unexpected argument '%s' (see lejepa export --help)", argv[optind]);
    if (!ckpt || !out)
        die("export: --ckpt and --out are required (see lejepa export --help)");
    char err[ERR_LEN];
    if (export_backbone(ckpt, out, err) != 0)
        die("export: %s", err);
    /* Say what was written: the user's next step is a strict load. */
    struct st_file f;
    if (st_open(&f, out, err) != 0)
        die("export: %s", err);
    size_t floats = 0;
    for (size_t i = 0; i < f.n; i++)
        if (f.tensors[i].dtype == ST_F32)
            floats += f.tensors[i].nbytes / sizeof(float);
    fprintf(stderr, "export: wrote %s: %zu tensors, %zu floats, %s names, step %s\n",
            out, f.n, floats, st_meta(&f, "layout"), st_meta(&f, "step"));
    st_close(&f);
    return 0;
}
