/* Two small CPU kernels around torch's FFT for the log-mel features (stethoscope.features.logmel).
 *
 * Why C: on a two-core machine the torch version of these steps costs about as much as the FFT
 * itself, mostly in full passes over megabyte-sized intermediate arrays (padded signal, int16 to
 * float, windowed frames, interleaved |X|^2, a banded dense mel product, its concatenation).
 * Here framing reads the 16-bit samples once and writes the windowed frames; the power spectra
 * of a few frames stay in the L1 cache while the mel filters read them, so only the nonzero
 * filter taps are multiplied (about 1,000 per frame instead of 65,000). Both release the GIL.
 *
 * The numbers are the same definition as the torch path (tests/test_features.py compares them):
 * zero-padded centred frames, a given window, |X|^2 = re^2 + im^2, and per mel band the sum of
 * its taps in increasing bin order.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static int
get_buffer(PyObject *obj, Py_buffer *view, int writable, const char *what)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        PyErr_Format(PyExc_TypeError, "%s must be a C-contiguous%s buffer", what,
                     writable ? " writable" : "");
        return -1;
    }
    return 0;
}

/* 'h' (int16), 'f' (float32), 'i' (int32), 'Zf' (complex64), in native byte order. */
static char
kind_of(const Py_buffer *view)
{
    const char *f = view->format ? view->format : "B";
#if PY_BIG_ENDIAN
    if (*f == '>' || *f == '=' || *f == '@')
#else
    if (*f == '<' || *f == '=' || *f == '@')
#endif
        f++;
    if (strcmp(f, "h") == 0 && view->itemsize == 2) return 'h';
    if (strcmp(f, "f") == 0 && view->itemsize == 4) return 'f';
    if (strcmp(f, "i") == 0 && view->itemsize == 4) return 'i';
    if (strcmp(f, "Zf") == 0 && view->itemsize == 8) return 'Z';
    return '?';
}

/* frames(samples, window, hop, out): out[t, j] = window[j] * x[t * hop + j - n_fft / 2], zero
 * outside the signal; x is int16 or float32, n_fft = len(window), out is float32 (T, n_fft). */
static PyObject *
frames(PyObject *self, PyObject *args)
{
    PyObject *o_x, *o_win, *o_out;
    Py_ssize_t hop;
    Py_buffer x, win, out;
    if (!PyArg_ParseTuple(args, "OOnO", &o_x, &o_win, &hop, &o_out))
        return NULL;
    if (get_buffer(o_x, &x, 0, "samples") < 0)
        return NULL;
    if (get_buffer(o_win, &win, 0, "window") < 0) {
        PyBuffer_Release(&x);
        return NULL;
    }
    if (get_buffer(o_out, &out, 1, "out") < 0) {
        PyBuffer_Release(&x);
        PyBuffer_Release(&win);
        return NULL;
    }
    char kx = kind_of(&x);
    Py_ssize_t n = x.len / (x.itemsize ? x.itemsize : 1);
    Py_ssize_t n_fft = win.len / 4;
    Py_ssize_t n_out = out.len / 4;
    const char *err = NULL;
    if (kx != 'h' && kx != 'f') err = "samples must be int16 or float32";
    else if (kind_of(&win) != 'f' || n_fft < 2) err = "window must be float32 with >= 2 values";
    else if (kind_of(&out) != 'f') err = "out must be float32";
    else if (hop < 1) err = "hop must be >= 1";
    else if (n_out % n_fft != 0) err = "len(out) must be a multiple of len(window)";
    else if (n_out / n_fft > 1 && hop > (PY_SSIZE_T_MAX - n_fft) / (n_out / n_fft - 1))
        err = "hop too large for this many frames";  /* t * hop would overflow */
    if (err) {
        PyErr_SetString(PyExc_ValueError, err);
    } else {
        Py_ssize_t T = n_out / n_fft, pad = n_fft / 2;
        const float *w = (const float *)win.buf;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t t = 0; t < T; t++) {
            Py_ssize_t start = t * hop - pad;
            float *o = (float *)out.buf + t * n_fft;
            Py_ssize_t j0 = start < 0 ? -start : 0;     /* first j inside the signal */
            Py_ssize_t j1 = n - start;                  /* one past the last */
            if (j1 > n_fft) j1 = n_fft;
            if (j0 > n_fft) j0 = n_fft;
            if (j1 < j0) j1 = j0;
            for (Py_ssize_t j = 0; j < j0; j++) o[j] = 0.0f;
            Py_ssize_t m = j1 - j0;
            const float *wj = w + j0;
            float *oj = o + j0;
            if (kx == 'h') {
                const int16_t *s = (const int16_t *)x.buf + (start + j0);
                for (Py_ssize_t j = 0; j < m; j++) oj[j] = (float)s[j] * wj[j];
            } else {
                const float *s = (const float *)x.buf + (start + j0);
                for (Py_ssize_t j = 0; j < m; j++) oj[j] = s[j] * wj[j];
            }
            for (Py_ssize_t j = j1; j < n_fft; j++) o[j] = 0.0f;
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&x);
    PyBuffer_Release(&win);
    PyBuffer_Release(&out);
    if (err) return NULL;
    Py_RETURN_NONE;
}

#define BLOCK 8  /* frames whose band sums are accumulated side by side */

#if defined(__GNUC__)
typedef float v4f __attribute__((vector_size(16)));

/* BLOCK frames at a time: their |X|^2 are interleaved bin by bin (p[k * BLOCK + i]), so that each
 * filter tap multiplies all of them with two 4-wide vector operations. Every lane adds its taps in
 * the same order as the one-frame loop below, so the sums are the same to the bit. */
static void
mel_sums(const float *spec, Py_ssize_t T, Py_ssize_t n_bins, Py_ssize_t n_mels,
         const int32_t *s, const int32_t *l, const float *wt, float floor_, float *out, float *raw)
{
    v4f *pv = (v4f *)(((uintptr_t)raw + 63) & ~(uintptr_t)63);
    float *pf = (float *)pv;
    float *stage = pf + BLOCK * n_bins;  /* BLOCK rows of output */
    for (Py_ssize_t t0 = 0; t0 < T; t0 += BLOCK) {
        Py_ssize_t bt = T - t0 < BLOCK ? T - t0 : BLOCK;
        const float *rows[BLOCK];
        for (Py_ssize_t i = 0; i < BLOCK; i++)  /* a short last block repeats its first frame */
            rows[i] = spec + 2 * (t0 + (i < bt ? i : 0)) * n_bins;
        for (Py_ssize_t k = 0; k < n_bins; k++) {
            float *d = pf + k * BLOCK;
            for (int i = 0; i < BLOCK; i++) {
                const float *z = rows[i] + 2 * k;
                d[i] = z[0] * z[0] + z[1] * z[1];
            }
        }
        const float *wm = wt;
        for (Py_ssize_t m = 0; m < n_mels; m++) {
            v4f a0 = {0, 0, 0, 0}, a1 = {0, 0, 0, 0};
            const v4f *pp = pv + 2 * (Py_ssize_t)s[m];
            for (int32_t q = 0; q < l[m]; q++) {
                v4f c = {wm[q], wm[q], wm[q], wm[q]};
                a0 += c * pp[2 * q];
                a1 += c * pp[2 * q + 1];
            }
            wm += l[m];
            float a[BLOCK];
            memcpy(a, &a0, sizeof a0);
            memcpy(a + 4, &a1, sizeof a1);
            for (Py_ssize_t i = 0; i < BLOCK; i++)
                stage[i * n_mels + m] = a[i] < floor_ ? floor_ : a[i];
        }
        /* The block's rows are one contiguous run of ``out``: written in order from the staging
         * area, the stores stream instead of missing the cache band by band (50 us a clip when
         * ``out`` is memory not touched recently, as each clip's slot of a shared buffer is). */
        memcpy(out + t0 * n_mels, stage, sizeof(float) * (size_t)(bt * n_mels));
    }
}
#else
/* Without GCC/Clang vector types: one frame at a time, the same sums. */
static void
mel_sums(const float *spec, Py_ssize_t T, Py_ssize_t n_bins, Py_ssize_t n_mels,
         const int32_t *s, const int32_t *l, const float *wt, float floor_, float *out, float *p)
{
    for (Py_ssize_t t = 0; t < T; t++) {
        const float *z = spec + 2 * t * n_bins;
        for (Py_ssize_t k = 0; k < n_bins; k++)
            p[k] = z[2 * k] * z[2 * k] + z[2 * k + 1] * z[2 * k + 1];
        float *o = out + t * n_mels;
        const float *wm = wt;
        for (Py_ssize_t m = 0; m < n_mels; m++) {
            const float *pm = p + s[m];
            float acc = 0.0f;
            for (int32_t i = 0; i < l[m]; i++) acc += wm[i] * pm[i];
            wm += l[m];
            o[m] = acc < floor_ ? floor_ : acc;
        }
    }
}
#endif

/* power_mel(spec, starts, lengths, weights, floor, out): spec complex64 (T, n_bins); band m sums
 * weights[off_m + i] * |spec[t, starts[m] + i]|^2 over i < lengths[m] (off_m = sum of the lengths
 * before m); out float32 (T, n_mels) = max(that sum, floor). */
static PyObject *
power_mel(PyObject *self, PyObject *args)
{
    PyObject *o_spec, *o_start, *o_len, *o_w, *o_out;
    float floor_;
    Py_buffer spec, st, ln, w, out;
    if (!PyArg_ParseTuple(args, "OOOOfO", &o_spec, &o_start, &o_len, &o_w, &floor_, &o_out))
        return NULL;
    Py_buffer *views[5] = {&spec, &st, &ln, &w, &out};
    PyObject *objs[5] = {o_spec, o_start, o_len, o_w, o_out};
    const char *names[5] = {"spec", "starts", "lengths", "weights", "out"};
    int got = 0;
    for (; got < 5; got++)
        if (get_buffer(objs[got], views[got], got == 4, names[got]) < 0)
            break;
    const char *err = NULL;
    Py_ssize_t n_mels = 0, T = 0, n_bins = 0;
    if (got == 5) {
        n_mels = st.len / 4;
        if (kind_of(&spec) != 'Z') err = "spec must be complex64";
        else if (kind_of(&st) != 'i' || kind_of(&ln) != 'i' || ln.len != st.len || n_mels < 1)
            err = "starts and lengths must be int32 arrays of one length (the mel bands)";
        else if (kind_of(&w) != 'f') err = "weights must be float32";
        else if (kind_of(&out) != 'f' || (out.len / 4) % n_mels != 0)
            err = "out must be float32 with a multiple of len(starts) values";
        else {
            T = out.len / 4 / n_mels;
            n_bins = T ? spec.len / 8 / T : 0;
            if (T && n_bins * T * 8 != spec.len) err = "spec must hold len(out) / n_mels frames";
            else {
                const int32_t *s = (const int32_t *)st.buf, *l = (const int32_t *)ln.buf;
                Py_ssize_t total = 0;
                for (Py_ssize_t m = 0; m < n_mels && !err; m++) {
                    if (s[m] < 0 || l[m] < 0 || (T && s[m] + (Py_ssize_t)l[m] > n_bins))
                        err = "a band runs outside the spectrum";
                    total += l[m];
                }
                if (!err && total != w.len / 4) err = "len(weights) must equal sum(lengths)";
            }
        }
        if (err) PyErr_SetString(PyExc_ValueError, err);
    }
    if (got == 5 && !err && T > 0) {
        float *p = PyMem_RawMalloc(sizeof(float) * BLOCK * (size_t)(n_bins + n_mels) + 64);
        if (!p) {
            err = "out of memory";
            PyErr_NoMemory();
        } else {
            Py_BEGIN_ALLOW_THREADS
            mel_sums((const float *)spec.buf, T, n_bins, n_mels, (const int32_t *)st.buf,
                     (const int32_t *)ln.buf, (const float *)w.buf, floor_, (float *)out.buf, p);
            Py_END_ALLOW_THREADS
            PyMem_RawFree(p);
        }
    }
    for (int i = 0; i < got; i++) PyBuffer_Release(views[i]);
    if (got < 5 || err) return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"frames", frames, METH_VARARGS,
     "frames(samples, window, hop, out): windowed, centred, zero-padded frames into out."},
    {"power_mel", power_mel, METH_VARARGS,
     "power_mel(spec, starts, lengths, weights, floor, out): banded mel sums of |spec|^2."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_native",
    "CPU kernels for the log-mel features (framing; |X|^2 and mel product).", -1, methods,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    return PyModule_Create(&module);
}
