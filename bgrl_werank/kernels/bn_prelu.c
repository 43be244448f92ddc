/* BatchNorm (training mode, batch statistics) followed by PReLU, fused: one kernel for the forward
 * pass, one for the backward pass, over a row-major (n, c) float32 activation.
 *
 * Built and loaded by bgrl_werank/kernels/__init__.py (see there for why it exists and how it is
 * checked). Every function takes the thread count and splits the rows into that many contiguous
 * ranges; each thread sums its columns in float over blocks of BLOCK rows and adds the block sums
 * in double, and the threads' sums are added in thread order, so a result depends on the thread
 * count only through that order.
 *
 * The normalised value is always formed as y = fmaf(z, scale[j], shift[j]) with
 * scale = gamma * invstd and shift = beta - mean * scale, in the forward and the backward pass alike,
 * so the backward pass sees exactly the sign of y that the forward pass used.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

/* Per-thread double accumulators: `count` arrays of c doubles for each of nthreads threads. */
static double *alloc_acc(int nthreads, int count, int64_t c) {
    return (double *)calloc((size_t)nthreads * (size_t)count * (size_t)c, sizeof(double));
}

static void row_block(int64_t n, int t, int nt, int64_t *lo, int64_t *hi) {
    *lo = n * t / nt;
    *hi = n * (t + 1) / nt;
}

/* Rows are summed in float over blocks of this many rows, each block's sums then added in double:
 * float arithmetic keeps the inner loop at full vector width, the blocks keep the rounding error
 * of a column sum that of BLOCK additions rather than n. */
#define BLOCK 64

/* Forward statistics over rows [lo, hi): adds each column's sum of d = z - origin and of d * d
 * into ps, pq. Subtracting a value near the mean (the first row) before squaring keeps
 * var = E[d^2] - E[d]^2 free of cancellation when |mean| >> std. */
static void forward_sums(const float *restrict z, int64_t lo, int64_t hi, int64_t c, const float *restrict origin,
                         float *restrict ps, float *restrict pq) {
    for (int64_t i = lo; i < hi; ++i) {
        const float *restrict row = z + i * c;
        for (int64_t j = 0; j < c; ++j) {
            float d = row[j] - origin[j];
            ps[j] += d;
            pq[j] += d * d;
        }
    }
}

/* Normalise and activate rows [lo, hi). */
static void forward_rows(const float *restrict z, int64_t lo, int64_t hi, int64_t c, const float *restrict scale,
                         const float *restrict shift, const float *restrict slope, float *restrict out) {
    for (int64_t i = lo; i < hi; ++i) {
        const float *restrict row = z + i * c;
        float *restrict o = out + i * c;
        for (int64_t j = 0; j < c; ++j) {
            float y = fmaf(row[j], scale[j], shift[j]);
            o[j] = y > 0.0f ? y : slope[j] * y;
        }
    }
}

/* Forward. z (n, c) -> out (n, c) = prelu(batchnorm(z)).
 * mean_out, invstd_out, var_out (c,): the batch mean, 1/sqrt(var + eps) and the biased variance.
 * slope: c values (a single slope is passed repeated). Returns 0, or 1 if memory ran out.
 * (The loops are in separate functions with restrict arguments: inside the OpenMP regions gcc did
 * not vectorise them.) */
int bnp_forward(const float *z, int64_t n, int64_t c, const float *gamma, const float *beta,
                const float *slope, double eps, int nthreads,
                float *out, float *mean_out, float *invstd_out, float *var_out) {
    double *acc = alloc_acc(nthreads, 2, c);
    float *cst = (float *)malloc(2 * (size_t)c * sizeof(float));
    float *part = (float *)malloc((size_t)nthreads * 2 * (size_t)c * sizeof(float));
    if (!acc || !cst || !part) { free(acc); free(cst); free(part); return 1; }
    float *scale = cst, *shift = cst + c;
    const float *origin = z; /* the first row */

#pragma omp parallel num_threads(nthreads)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int64_t lo, hi;
        row_block(n, t, nt, &lo, &hi);
        double *s = acc + (size_t)t * 2 * c, *q = s + c;
        float *ps = part + (size_t)t * 2 * c, *pq = ps + c;
        for (int64_t b = lo; b < hi; b += BLOCK) {
            int64_t e = b + BLOCK < hi ? b + BLOCK : hi;
            for (int64_t j = 0; j < c; ++j) ps[j] = pq[j] = 0.0f;
            forward_sums(z, b, e, c, origin, ps, pq);
            for (int64_t j = 0; j < c; ++j) {
                s[j] += ps[j];
                q[j] += pq[j];
            }
        }
    }
    for (int64_t j = 0; j < c; ++j) {
        double s = 0.0, q = 0.0;
        for (int t = 0; t < nthreads; ++t) {
            s += acc[(size_t)t * 2 * c + j];
            q += acc[(size_t)t * 2 * c + c + j];
        }
        double md = s / (double)n;
        double var = q / (double)n - md * md;
        if (var < 0.0) var = 0.0;
        float invstd = (float)(1.0 / sqrt(var + eps));
        float mean = (float)((double)origin[j] + md);
        mean_out[j] = mean;
        invstd_out[j] = invstd;
        var_out[j] = (float)var;
        scale[j] = gamma[j] * invstd;
        shift[j] = beta[j] - mean * scale[j];
    }

#pragma omp parallel num_threads(nthreads)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int64_t lo, hi;
        row_block(n, t, nt, &lo, &hi);
        forward_rows(z, lo, hi, c, scale, shift, slope, out);
    }
    free(acc);
    free(cst);
    free(part);
    return 0;
}

/* Pass 1 of the backward pass over rows [lo, hi): adds each column's sum of gy, gy * (z - mean)
 * and (y <= 0) grad * y into pg, pgz, pa. (Separate functions with restrict arguments: inside the
 * OpenMP regions gcc did not vectorise these loops.) */
static void backward_sums(const float *restrict grad, const float *restrict z, int64_t lo, int64_t hi, int64_t c,
                          const float *restrict scale, const float *restrict shift, const float *restrict slope,
                          const float *restrict mean, float *restrict pg, float *restrict pgz, float *restrict pa) {
    for (int64_t i = lo; i < hi; ++i) {
        const float *restrict g = grad + i * c, *restrict row = z + i * c;
        for (int64_t j = 0; j < c; ++j) {
            float y = fmaf(row[j], scale[j], shift[j]);
            int pos = y > 0.0f;
            float gy = pos ? g[j] : slope[j] * g[j];
            pg[j] += gy;
            pgz[j] += gy * (row[j] - mean[j]);
            pa[j] += pos ? 0.0f : g[j] * y;
        }
    }
}

/* Pass 2 of the backward pass over rows [lo, hi): grad_z. */
static void backward_input(const float *restrict grad, const float *restrict z, int64_t lo, int64_t hi, int64_t c,
                           const float *restrict scale, const float *restrict shift, const float *restrict slope,
                           const float *restrict mean, const float *restrict gmean,
                           const float *restrict proj, float *restrict grad_z) {
    for (int64_t i = lo; i < hi; ++i) {
        const float *restrict g = grad + i * c, *restrict row = z + i * c;
        float *restrict gz = grad_z + i * c;
        for (int64_t j = 0; j < c; ++j) {
            float y = fmaf(row[j], scale[j], shift[j]);
            float gy = y > 0.0f ? g[j] : slope[j] * g[j];
            gz[j] = scale[j] * (gy - gmean[j] - (row[j] - mean[j]) * proj[j]);  /* scale = gamma * invstd */
        }
    }
}

/* Backward of bnp_forward, given grad (n, c) of its output and the same z, mean, invstd.
 * slope always has c values here (a single slope is passed repeated); per_channel says whether
 * grad_slope is c per-column sums or their total (1 value). grad_z (n, c) may be NULL (not
 * needed); grad_gamma, grad_beta (c,) and grad_slope are written. With gy = dL/dy (grad where
 * y > 0, else slope * grad) and xhat = (z - mean) * invstd:
 *   grad_beta = sum gy, grad_gamma = sum gy * xhat, grad_slope = sum over y <= 0 of grad * y,
 *   grad_z = gamma * invstd * (gy - mean(gy) - xhat * mean(gy * xhat)).
 * Returns 0, or 1 if memory ran out. */
int bnp_backward(const float *restrict grad, const float *restrict z, int64_t n, int64_t c,
                 const float *restrict gamma, const float *restrict beta, const float *restrict slope,
                 int per_channel, const float *restrict mean, const float *restrict invstd, int nthreads,
                 float *restrict grad_z, float *restrict grad_gamma, float *restrict grad_beta,
                 float *restrict grad_slope) {
    double *acc = alloc_acc(nthreads, 3, c);
    float *cst = (float *)malloc(4 * (size_t)c * sizeof(float));
    float *part = (float *)malloc((size_t)nthreads * 3 * (size_t)c * sizeof(float));
    if (!acc || !cst || !part) { free(acc); free(cst); free(part); return 1; }
    float *scale = cst, *shift = cst + c, *proj = cst + 2 * c, *gmean = cst + 3 * c;
    for (int64_t j = 0; j < c; ++j) {
        scale[j] = gamma[j] * invstd[j];
        shift[j] = beta[j] - mean[j] * scale[j];
    }

    /* pass 1: sum gy, sum gy * (z - mean), sum over y <= 0 of grad * y */
#pragma omp parallel num_threads(nthreads)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int64_t lo, hi;
        row_block(n, t, nt, &lo, &hi);
        double *sg = acc + (size_t)t * 3 * c, *sgz = sg + c, *sa = sg + 2 * c;
        float *restrict pg = part + (size_t)t * 3 * c, *restrict pgz = pg + c, *restrict pa = pg + 2 * c;
        for (int64_t b = lo; b < hi; b += BLOCK) {
            int64_t e = b + BLOCK < hi ? b + BLOCK : hi;
            for (int64_t j = 0; j < c; ++j) pg[j] = pgz[j] = pa[j] = 0.0f;
            backward_sums(grad, z, b, e, c, scale, shift, slope, mean, pg, pgz, pa);
            for (int64_t j = 0; j < c; ++j) {
                sg[j] += pg[j];
                sgz[j] += pgz[j];
                sa[j] += pa[j];
            }
        }
    }
    double slope_total = 0.0;
    for (int64_t j = 0; j < c; ++j) {
        double sg = 0.0, sgz = 0.0, sa = 0.0;
        for (int t = 0; t < nthreads; ++t) {
            const double *a = acc + (size_t)t * 3 * c;
            sg += a[j];
            sgz += a[c + j];
            sa += a[2 * c + j];
        }
        grad_beta[j] = (float)sg;
        grad_gamma[j] = (float)(sgz * invstd[j]);
        if (per_channel) grad_slope[j] = (float)sa;
        else slope_total += sa;
        proj[j] = (float)(sgz * (double)invstd[j] * (double)invstd[j] / (double)n);
        gmean[j] = (float)(sg / (double)n);
    }
    if (!per_channel) grad_slope[0] = (float)slope_total;

    /* pass 2: grad_z */
    if (grad_z) {
#pragma omp parallel num_threads(nthreads)
        {
            int t = omp_get_thread_num(), nt = omp_get_num_threads();
            int64_t lo, hi;
            row_block(n, t, nt, &lo, &hi);
            backward_input(grad, z, lo, hi, c, scale, shift, slope, mean, gmean, proj, grad_z);
        }
    }
    free(acc);
    free(cst);
    free(part);
    return 0;
}

/* PReLU alone (the predictor's), backward, rows [lo, hi): grad_x (may be NULL) and each column's
 * sum over x <= 0 of grad * x into pa. */
static void prelu_rows(const float *restrict grad, const float *restrict x, int64_t lo, int64_t hi, int64_t c,
                       const float *restrict slope, float *restrict grad_x, float *restrict pa) {
    for (int64_t i = lo; i < hi; ++i) {
        const float *restrict g = grad + i * c, *restrict row = x + i * c;
        float *restrict gx = grad_x + i * c;
        for (int64_t j = 0; j < c; ++j) {
            int pos = row[j] > 0.0f;
            gx[j] = pos ? g[j] : slope[j] * g[j];
            pa[j] += pos ? 0.0f : g[j] * row[j];
        }
    }
}

static void prelu_rows_no_input(const float *restrict grad, const float *restrict x, int64_t lo, int64_t hi,
                                int64_t c, float *restrict pa) {
    for (int64_t i = lo; i < hi; ++i) {
        const float *restrict g = grad + i * c, *restrict row = x + i * c;
        for (int64_t j = 0; j < c; ++j) pa[j] += row[j] > 0.0f ? 0.0f : g[j] * row[j];
    }
}

/* Backward of y = prelu(x) for a row-major (n, c) x in one pass over grad and x:
 *   grad_x = grad where x > 0, else slope * grad   (grad_x may be NULL: not needed);
 *   grad_slope = sum over x <= 0 of grad * x, per column (per_channel) or in total (1 value).
 * slope always has c values (a single slope is passed repeated). Sums as in the BatchNorm kernel:
 * float over blocks of BLOCK rows, the blocks and threads in double. Returns 0, or 1 if memory ran out. */
int prelu_backward(const float *restrict grad, const float *restrict x, int64_t n, int64_t c,
                   const float *restrict slope, int per_channel, int nthreads,
                   float *restrict grad_x, float *restrict grad_slope) {
    double *acc = alloc_acc(nthreads, 1, c);
    float *part = (float *)malloc((size_t)nthreads * (size_t)c * sizeof(float));
    if (!acc || !part) { free(acc); free(part); return 1; }
#pragma omp parallel num_threads(nthreads)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int64_t lo, hi;
        row_block(n, t, nt, &lo, &hi);
        double *sa = acc + (size_t)t * c;
        float *restrict pa = part + (size_t)t * c;
        for (int64_t b = lo; b < hi; b += BLOCK) {
            int64_t e = b + BLOCK < hi ? b + BLOCK : hi;
            for (int64_t j = 0; j < c; ++j) pa[j] = 0.0f;
            if (grad_x) prelu_rows(grad, x, b, e, c, slope, grad_x, pa);
            else prelu_rows_no_input(grad, x, b, e, c, pa);
            for (int64_t j = 0; j < c; ++j) sa[j] += pa[j];
        }
    }
    double total = 0.0;
    for (int64_t j = 0; j < c; ++j) {
        double s = 0.0;
        for (int t = 0; t < nthreads; ++t) s += acc[(size_t)t * c + j];
        if (per_channel) grad_slope[j] = (float)s;
        else total += s;
    }
    if (!per_channel) grad_slope[0] = (float)total;
    free(acc);
    free(part);
    return 0;
}

/* ------------------------------------------------------------------------------------------------
 * Column masking of sparse CSR features (the views' feature masking): the entries of the columns
 * where keep[j] != 0, in their order, and the same for the transpose (whose rows are the columns).
 * Indices are int32 as MaskableCSR stores them. Each function is two passes: count, then write. */

/* Entries of rows [lo, hi) whose column is kept. */
static int64_t count_kept(const int32_t *restrict crow, const int32_t *restrict col, const uint8_t *restrict keep,
                          int64_t lo, int64_t hi) {
    int64_t kept = 0;
    for (int64_t k = crow[lo]; k < crow[hi]; ++k) kept += keep[col[k]] != 0;
    return kept;
}

/* X (n rows; crow, col, val) -> X with only the kept columns (crow_out n+1 values; col_out,
 * val_out with room for nnz entries). Returns the number of entries kept, or -1 if memory ran out. */
int64_t csr_keep_columns(const int32_t *restrict crow, const int32_t *restrict col, const float *restrict val,
                         int64_t n, const uint8_t *restrict keep, int nthreads,
                         int32_t *restrict crow_out, int32_t *restrict col_out, float *restrict val_out) {
    int64_t *start = (int64_t *)calloc((size_t)nthreads + 1, sizeof(int64_t));
    if (!start) return -1;
    int used = nthreads; /* the team may be smaller than asked for */
#pragma omp parallel num_threads(nthreads)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int64_t lo, hi;
        row_block(n, t, nt, &lo, &hi);
        start[t + 1] = count_kept(crow, col, keep, lo, hi);
#pragma omp barrier
#pragma omp single
        {
            used = nt;
            for (int s = 0; s < nt; ++s) start[s + 1] += start[s];
        }
        int64_t w = start[t];
        for (int64_t i = lo; i < hi; ++i) {
            crow_out[i] = (int32_t)w;
            for (int64_t k = crow[i]; k < crow[i + 1]; ++k) {
                int32_t j = col[k];
                if (keep[j]) {
                    col_out[w] = j;
                    val_out[w] = val[k];
                    ++w;
                }
            }
        }
    }
    int64_t total = start[used];
    crow_out[n] = (int32_t)total;
    free(start);
    return total;
}

/* Xt (f rows = X's columns; crow, col, val) -> Xt with only the kept rows' entries (the others
 * empty): crow_out f+1 values, col_out/val_out room for nnz. Returns the entries kept. */
int64_t csr_keep_rows(const int32_t *restrict crow, const int32_t *restrict col, const float *restrict val,
                      int64_t f, const uint8_t *restrict keep, int nthreads,
                      int32_t *restrict crow_out, int32_t *restrict col_out, float *restrict val_out) {
    int64_t w = 0;
    for (int64_t r = 0; r < f; ++r) {  /* offsets: f is small (features) */
        crow_out[r] = (int32_t)w;
        if (keep[r]) w += crow[r + 1] - crow[r];
    }
    crow_out[f] = (int32_t)w;
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, 64)
    for (int64_t r = 0; r < f; ++r) {
        if (!keep[r]) continue;
        int64_t len = crow[r + 1] - crow[r];
        memcpy(col_out + crow_out[r], col + crow[r], (size_t)len * sizeof(int32_t));
        memcpy(val_out + crow_out[r], val + crow[r], (size_t)len * sizeof(float));
    }
    return w;
}
