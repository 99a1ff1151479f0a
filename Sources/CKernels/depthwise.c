/* Depthwise convolution, one plane at a time, as shifted whole-plane sums.

   The zero-padded input is split into its stride phases: phase (a, b) holds the padded
   pixels at rows ≡ a and columns ≡ b (modulo the strides), as a plane of R rows with row
   pitch Q. In phase coordinates every kernel tap is then a fixed shift of one phase plane,
   so an output pixel at flat index i = y·Q + x is Σ_taps weight · phase[i + shift], and the
   whole plane is one long vector loop (distill_taps_accumulate), not rows of 8 to 32
   floats. The columns x ≥ outputWidth of each row are computed and dropped. With stride 1
   there is one phase, the padded plane itself.

   The backward pass uses the same layout: the kernel's gradient is a dot product of the
   output's gradient with each tap's shifted phase, and the input's gradient in each phase
   is the output's gradient (with a zero margin before it) shifted back by each tap of that
   phase. */
#include <string.h>

#include "CKernels.h"
#include "kernels.h"

typedef struct {
    long phasesHigh, phasesWide; /* phases in use: min(stride, kernel) each way */
    long rows, pitch;            /* R and Q */
    long margin;                 /* the largest tap shift: the zero margin before the output's gradient */
} layout;

static layout plan(const distill_depthwise_plane *p) {
    layout l;
    l.phasesHigh = p->strideHeight < p->kernelHeight ? p->strideHeight : p->kernelHeight;
    l.phasesWide = p->strideWidth < p->kernelWidth ? p->strideWidth : p->kernelWidth;
    long shiftRows = (p->kernelHeight - 1) / p->strideHeight, shiftColumns = (p->kernelWidth - 1) / p->strideWidth;
    l.rows = p->outputHeight + shiftRows;
    l.pitch = p->outputWidth + shiftColumns;
    l.margin = shiftRows * l.pitch + shiftColumns;
    return l;
}

int distill_depthwise_plane_valid(const distill_depthwise_plane *p) {
    if (p->height < 1 || p->width < 1 || p->kernelHeight < 1 || p->kernelWidth < 1 || p->strideHeight < 1
        || p->strideWidth < 1 || p->paddingHeight < 0 || p->paddingWidth < 0) return 0;
    if (p->kernelHeight * p->kernelWidth > DISTILL_MAX_TAPS) return 0;
    long spanHigh = p->height + 2 * p->paddingHeight - p->kernelHeight, spanWide = p->width + 2 * p->paddingWidth - p->kernelWidth;
    if (spanHigh < 0 || spanWide < 0) return 0;
    return p->outputHeight == spanHigh / p->strideHeight + 1 && p->outputWidth == spanWide / p->strideWidth + 1;
}

long distill_depthwise_scratch_count(const distill_depthwise_plane *p) {
    layout l = plan(p);
    long plane = l.rows * l.pitch;
    /* phases, the phases' gradients, and the output (or its gradient with the margin) */
    return 2 * l.phasesHigh * l.phasesWide * plane + l.margin + plane;
}

/* Phase (a, b) of the zero-padded input: phase[r·Q + c] = padded[sh·r + a][sw·c + b]. */
static void split_phases(const distill_depthwise_plane *p, layout l, const float *input, float *phases) {
    for (long a = 0; a < l.phasesHigh; a++) {
        for (long b = 0; b < l.phasesWide; b++) {
            float *phase = phases + (a * l.phasesWide + b) * l.rows * l.pitch;
            /* Columns c whose input column sw·c + b − pw lies inside the image: [low, high). */
            long low = (p->paddingWidth - b + p->strideWidth - 1) / p->strideWidth;
            if (p->paddingWidth - b < 0) low = 0;
            long high = (p->width + p->paddingWidth - b + p->strideWidth - 1) / p->strideWidth;
            if (high > l.pitch) high = l.pitch;
            if (high < 0) high = 0;
            if (low > high) low = high;
            for (long r = 0; r < l.rows; r++) {
                float *row = phase + r * l.pitch;
                long y = p->strideHeight * r + a - p->paddingHeight;
                if (y < 0 || y >= p->height) {
                    memset(row, 0, (size_t)l.pitch * sizeof(float));
                    continue;
                }
                const float *source = input + y * p->width + (p->strideWidth * low + b - p->paddingWidth);
                for (long c = 0; c < low; c++) row[c] = 0;
                if (p->strideWidth == 1) {
                    memcpy(row + low, source, (size_t)(high - low) * sizeof(float));
                } else {
                    for (long c = low; c < high; c++) row[c] = source[(c - low) * p->strideWidth];
                }
                for (long c = high; c < l.pitch; c++) row[c] = 0;
            }
        }
    }
}

/* Where tap (dy, dx) reads in the phase planes, relative to the output's flat index. */
static const float *tap_source(const distill_depthwise_plane *p, layout l, const float *phases, long dy, long dx) {
    long a = dy % p->strideHeight, b = dx % p->strideWidth;
    return phases + (a * l.phasesWide + b) * l.rows * l.pitch + (dy / p->strideHeight) * l.pitch + dx / p->strideWidth;
}

void distill_depthwise_forward(const distill_depthwise_plane *p, const float *input, const float *kernel,
                               float bias, float *output, float *scratch) {
    distill_kernels_ensure_chosen();
    layout l = plan(p);
    float *phases = scratch, *flat = scratch + 2 * l.phasesHigh * l.phasesWide * l.rows * l.pitch;
    split_phases(p, l, input, phases);
    const float *sources[DISTILL_MAX_TAPS];
    int taps = (int)(p->kernelHeight * p->kernelWidth);
    for (long dy = 0; dy < p->kernelHeight; dy++) {
        for (long dx = 0; dx < p->kernelWidth; dx++) sources[dy * p->kernelWidth + dx] = tap_source(p, l, phases, dy, dx);
    }
    long count = (p->outputHeight - 1) * l.pitch + p->outputWidth;
    if (l.pitch == p->outputWidth) {
        distill_kernels.accumulate(count, taps, sources, kernel, bias, output);
        return;
    }
    distill_kernels.accumulate(count, taps, sources, kernel, bias, flat);
    for (long y = 0; y < p->outputHeight; y++) {
        memcpy(output + y * p->outputWidth, flat + y * l.pitch, (size_t)p->outputWidth * sizeof(float));
    }
}

void distill_depthwise_backward(const distill_depthwise_plane *p, const float *input, const float *kernel,
                                const float *gradOutput, float *gradInput, float *gradKernel, float *scratch) {
    distill_kernels_ensure_chosen();
    layout l = plan(p);
    long plane = l.rows * l.pitch, phaseCount = l.phasesHigh * l.phasesWide;
    float *phases = scratch, *phaseGrads = scratch + phaseCount * plane, *grad = phaseGrads + phaseCount * plane;
    /* The output's gradient at pitch Q after a zero margin; zero in columns ≥ outputWidth and
       rows ≥ outputHeight, so shifted reads past a row's end or the plane's start add nothing. */
    memset(grad, 0, (size_t)(l.margin + plane) * sizeof(float));
    float *g = grad + l.margin;
    for (long y = 0; y < p->outputHeight; y++) {
        memcpy(g + y * l.pitch, gradOutput + y * p->outputWidth, (size_t)p->outputWidth * sizeof(float));
    }
    int taps = (int)(p->kernelHeight * p->kernelWidth);
    const float *sources[DISTILL_MAX_TAPS];
    float weights[DISTILL_MAX_TAPS];
    if (gradKernel) {
        split_phases(p, l, input, phases);
        for (long dy = 0; dy < p->kernelHeight; dy++) {
            for (long dx = 0; dx < p->kernelWidth; dx++) sources[dy * p->kernelWidth + dx] = tap_source(p, l, phases, dy, dx);
        }
        distill_kernels.dot((p->outputHeight - 1) * l.pitch + p->outputWidth, taps, sources, g, gradKernel);
    }
    if (!gradInput) return;
    for (long a = 0; a < l.phasesHigh; a++) {
        for (long b = 0; b < l.phasesWide; b++) {
            /* The taps of this phase, each reading the gradient shifted back by its offset. */
            int count = 0;
            for (long dy = a; dy < p->kernelHeight; dy += p->strideHeight) {
                for (long dx = b; dx < p->kernelWidth; dx += p->strideWidth) {
                    sources[count] = g - ((dy / p->strideHeight) * l.pitch + dx / p->strideWidth);
                    weights[count] = kernel[dy * p->kernelWidth + dx];
                    count++;
                }
            }
            float *phaseGrad = phaseGrads + (a * l.phasesWide + b) * plane;
            distill_kernels.accumulate(plane, count, sources, weights, 0, phaseGrad);
            /* Add the phase back into the image: pixel (y, x) with y + ph ≡ a, x + pw ≡ b. */
            long y0 = ((a - p->paddingHeight) % p->strideHeight + p->strideHeight) % p->strideHeight;
            long x0 = ((b - p->paddingWidth) % p->strideWidth + p->strideWidth) % p->strideWidth;
            for (long y = y0; y < p->height; y += p->strideHeight) {
                long r = (y + p->paddingHeight) / p->strideHeight;
                if (r >= l.rows) break;
                const float *source = phaseGrad + r * l.pitch;
                float *target = gradInput + y * p->width;
                long c = (x0 + p->paddingWidth) / p->strideWidth;
                if (p->strideWidth == 1) {
                    long end = p->width;
                    if (end - x0 > l.pitch - c) end = x0 + (l.pitch - c);
                    for (long x = x0; x < end; x++) target[x] += source[c + (x - x0)];
                } else {
                    for (long x = x0; x < p->width && c < l.pitch; x += p->strideWidth, c++) target[x] += source[c];
                }
            }
        }
    }
}
