#ifndef DISTILL_CIMAGE_H
#define DISTILL_CIMAGE_H

#include <stddef.h>

/* Decodes a PNG or JPEG held in memory into 8-bit pixels, interleaved, with `channels`
   (1: grayscale, 3: RGB) per pixel. Images of more than `max_pixels` pixels are refused
   before any pixel memory is allocated. Returns 0 and sets *pixels (free with
   distill_image_free), *width and *height; or returns non-zero with a message. Nothing is
   printed: libjpeg's and libpng's warnings are swallowed and errors returned. */
int distill_image_decode(const unsigned char *data, size_t size, int channels, long max_pixels,
                         unsigned char **pixels, int *width, int *height,
                         char *message, size_t message_size);

void distill_image_free(unsigned char *pixels);

/* Width and height of the image file at `path` from its header alone (a PNG's IHDR, a JPEG's
   SOF marker, reached by skipping segments), without decoding. Returns 0 and sets them, or
   non-zero with a message. */
int distill_image_probe_file(const char *path, int *width, int *height, char *message, size_t message_size);

/* Buffers one thread reuses from image to image (the file's bytes, the decoded pixels). */
typedef struct distill_image_buffers distill_image_buffers;
distill_image_buffers *distill_image_buffers_create(void);
void distill_image_buffers_free(distill_image_buffers *buffers);

/* Reads the image file at `path` (at most `max_file_bytes`), decodes it (as
   distill_image_decode) and writes it planar [channels, height, width] into `out` as
   (v - mean[c]) / std[c], v the pixel in [0, 1]: resized bilinearly with half-pixel centres
   when `resize` is non-zero and the size differs (PyTorch's interpolate(mode="bilinear",
   align_corners=False)), else the image must be height x width. Returns 0; 1 with a message;
   or 2 when the size differs and `resize` is zero (*found_width, *found_height say what it is). */
int distill_image_load(const char *path, distill_image_buffers *buffers, int channels, long max_pixels,
                       long max_file_bytes, int height, int width, int resize,
                       const float *mean, const float *std, float *out,
                       int *found_width, int *found_height, char *message, size_t message_size);

#endif
