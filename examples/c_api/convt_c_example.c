/*
 * A minimal C extension module calling convt_blas through its C API: it
 * does not link against convt_blas, and the kernel runs without the GIL.
 *
 *   conv_transpose1d(x, w, out, stride=1, padding=0, output_padding=0,
 *                    groups=1, dilation=1, n_threads=1)
 *
 * x (N, C_in, L_in), w (C_in, C_out / groups, K), out (N, C_out, L_out):
 * C-contiguous float64 arrays; out is overwritten with the result.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#include "convt_blas.h"

/* A 3-D, C-contiguous float64 buffer of obj; -1 with an exception set. */
static int get_array(PyObject *obj, Py_buffer *view, int writable, const char *name)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0)
        return -1;
    if (view->ndim != 3 || strcmp(view->format, "d") != 0) {
        PyErr_Format(PyExc_ValueError, "%s must be a 3-D float64 array", name);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyObject *conv_transpose1d(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"x", "w", "out", "stride", "padding", "output_padding",
                               "groups", "dilation", "n_threads", NULL};
    PyObject *x_obj, *w_obj, *out_obj, *result = NULL;
    long long stride = 1, padding = 0, output_padding = 0, groups = 1, dilation = 1;
    int n_threads = 1, status;
    Py_buffer x, w, out;
    convt_blas_params p;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO|LLLLLi", keywords, &x_obj, &w_obj,
                                     &out_obj, &stride, &padding, &output_padding, &groups,
                                     &dilation, &n_threads))
        return NULL;
    if (get_array(x_obj, &x, 0, "x") < 0)
        return NULL;
    if (get_array(w_obj, &w, 0, "w") < 0)
        goto release_x;
    if (get_array(out_obj, &out, 1, "out") < 0)
        goto release_w;

    p.batch = x.shape[0];
    p.in_channels = x.shape[1];
    p.in_length = x.shape[2];
    p.out_channels = w.shape[1] * groups;
    p.kernel_size = w.shape[2];
    p.stride = stride;
    p.padding = padding;
    p.output_padding = output_padding;
    p.dilation = dilation;
    p.groups = groups;
    /* The kernel checks p; that the buffers fit p is ours to check. */
    if (w.shape[0] != p.in_channels || out.shape[0] != p.batch
            || out.shape[1] != p.out_channels
            || out.shape[2] != convt_blas_API->output_length(&p)) {
        PyErr_SetString(PyExc_ValueError, "w or out does not fit x and the parameters");
        goto release_all;
    }

    Py_BEGIN_ALLOW_THREADS
    /* Element strides of x (batch, channel, length); NULL bias; NULL
     * workspace: the kernel allocates its own. */
    status = convt_blas_API->conv_transpose1d_f64(
        &p, (const double *)x.buf, p.in_channels * p.in_length, p.in_length, 1,
        (const double *)w.buf, NULL, (double *)out.buf, NULL, 0, n_threads);
    Py_END_ALLOW_THREADS

    if (status != CONVT_BLAS_OK)
        PyErr_Format(PyExc_ValueError, "convt_blas: %s (status %d)",
                     convt_blas_strerror(status), status);
    else {
        Py_INCREF(Py_None);
        result = Py_None;
    }
release_all:
    PyBuffer_Release(&out);
release_w:
    PyBuffer_Release(&w);
release_x:
    PyBuffer_Release(&x);
    return result;
}

static PyMethodDef methods[] = {
    {"conv_transpose1d", (PyCFunction)(void (*)(void))conv_transpose1d,
     METH_VARARGS | METH_KEYWORDS, "out[...] = conv_transpose1d(x, w, ...), float64."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "convt_c_example", NULL, -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit_convt_c_example(void)
{
    if (import_convt_blas() < 0)  /* fetches the function table once */
        return NULL;
    return PyModule_Create(&module);
}
