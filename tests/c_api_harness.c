/*
 * Test harness for the C API: each entry of the function table exposed to
 * Python one to one, on buffers, with None standing for NULL. Built by
 * test_embedding.py against convt_blas.get_include().
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#include "convt_blas.h"

/* None -> NULL, else a 10-tuple in the field order of convt_blas_params. */
static int get_params(PyObject *obj, convt_blas_params *storage, const convt_blas_params **p)
{
    long long v[10];
    if (obj == Py_None) {
        *p = NULL;
        return 0;
    }
    if (!PyArg_ParseTuple(obj, "LLLLLLLLLL", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
                          &v[7], &v[8], &v[9]))
        return -1;
    storage->batch = v[0];
    storage->in_channels = v[1];
    storage->in_length = v[2];
    storage->out_channels = v[3];
    storage->kernel_size = v[4];
    storage->stride = v[5];
    storage->padding = v[6];
    storage->output_padding = v[7];
    storage->dilation = v[8];
    storage->groups = v[9];
    *p = storage;
    return 0;
}

/* None -> NULL (view->obj left NULL, so releasing it is a no-op), else the
 * address of the buffer's first element, strided buffers included. */
static int get_pointer(PyObject *obj, Py_buffer *view, int writable, void **ptr)
{
    view->obj = NULL;
    *ptr = NULL;
    if (obj == Py_None)
        return 0;
    if (PyObject_GetBuffer(obj, view, writable ? PyBUF_RECORDS : PyBUF_RECORDS_RO) < 0)
        return -1;
    *ptr = view->buf;
    return 0;
}

/* call(dtype, params, x, (stride_batch, stride_channel, stride_length), w, bias, out,
 *      workspace, n_threads) -> status; dtype is NumPy's character code (f d F D) and
 * the workspace length is the workspace buffer's element count. */
static PyObject *call(PyObject *self, PyObject *args)
{
    const char *dtype;
    PyObject *params_obj, *objs[5];
    long long sn, sc, sl;
    int n_threads, i, status = 0;
    convt_blas_params storage;
    const convt_blas_params *p;
    Py_buffer views[5];
    void *ptr[5];
    int64_t workspace_len;

    if (!PyArg_ParseTuple(args, "sOO(LLL)OOOOi", &dtype, &params_obj, &objs[0], &sn, &sc, &sl,
                          &objs[1], &objs[2], &objs[3], &objs[4], &n_threads))
        return NULL;
    if (get_params(params_obj, &storage, &p) < 0)
        return NULL;
    for (i = 0; i < 5; i++) {
        if (get_pointer(objs[i], &views[i], i >= 3, &ptr[i]) < 0) {
            while (i-- > 0)
                PyBuffer_Release(&views[i]);
            return NULL;
        }
    }
    workspace_len = ptr[4] != NULL ? views[4].len / views[4].itemsize : 0;

    /* The entry points differ only in element type: void pointers convert to each. */
#define CALL(entry) convt_blas_API->entry(p, ptr[0], sn, sc, sl, ptr[1], ptr[2], ptr[3], ptr[4], \
                                          workspace_len, n_threads)
    Py_BEGIN_ALLOW_THREADS
    switch (dtype[0]) {
    case 'f': status = CALL(conv_transpose1d_f32); break;
    case 'd': status = CALL(conv_transpose1d_f64); break;
    case 'F': status = CALL(conv_transpose1d_c64); break;
    case 'D': status = CALL(conv_transpose1d_c128); break;
    default: status = 1;  /* not a status the library returns */
    }
    Py_END_ALLOW_THREADS
#undef CALL

    for (i = 0; i < 5; i++)
        PyBuffer_Release(&views[i]);
    if (status == 1) {
        PyErr_Format(PyExc_ValueError, "unknown dtype code %s", dtype);
        return NULL;
    }
    return PyLong_FromLong(status);
}

/* prepare(dtype, params, weight, prepared, n_threads) -> status; prepared_len is the
 * prepared buffer's element count (0 for None). */
static PyObject *prepare(PyObject *self, PyObject *args)
{
    const char *dtype;
    PyObject *params_obj, *objs[2];
    int n_threads, i, status = 0;
    convt_blas_params storage;
    const convt_blas_params *p;
    Py_buffer views[2];
    void *ptr[2];
    int64_t prepared_len;

    if (!PyArg_ParseTuple(args, "sOOOi", &dtype, &params_obj, &objs[0], &objs[1], &n_threads))
        return NULL;
    if (get_params(params_obj, &storage, &p) < 0)
        return NULL;
    for (i = 0; i < 2; i++) {
        if (get_pointer(objs[i], &views[i], i == 1, &ptr[i]) < 0) {
            while (i-- > 0)
                PyBuffer_Release(&views[i]);
            return NULL;
        }
    }
    prepared_len = ptr[1] != NULL ? views[1].len / views[1].itemsize : 0;
#define PREPARE(entry) convt_blas_API->entry(p, ptr[0], ptr[1], prepared_len, n_threads)
    Py_BEGIN_ALLOW_THREADS
    switch (dtype[0]) {
    case 'f': status = PREPARE(prepare_weight_f32); break;
    case 'd': status = PREPARE(prepare_weight_f64); break;
    case 'F': status = PREPARE(prepare_weight_c64); break;
    case 'D': status = PREPARE(prepare_weight_c128); break;
    default: status = 1;
    }
    Py_END_ALLOW_THREADS
#undef PREPARE
    for (i = 0; i < 2; i++)
        PyBuffer_Release(&views[i]);
    if (status == 1) {
        PyErr_Format(PyExc_ValueError, "unknown dtype code %s", dtype);
        return NULL;
    }
    return PyLong_FromLong(status);
}

/* call_prepared(dtype, params, x, strides, w, prepared, bias, out, workspace, n_threads)
 * -> status: call() with a prepared weight (its length: the buffer's element count). */
static PyObject *call_prepared(PyObject *self, PyObject *args)
{
    const char *dtype;
    PyObject *params_obj, *objs[6];
    long long sn, sc, sl;
    int n_threads, i, status = 0;
    convt_blas_params storage;
    const convt_blas_params *p;
    Py_buffer views[6];
    void *ptr[6];
    int64_t prepared_len, workspace_len;

    if (!PyArg_ParseTuple(args, "sOO(LLL)OOOOOi", &dtype, &params_obj, &objs[0], &sn, &sc,
                          &sl, &objs[1], &objs[2], &objs[3], &objs[4], &objs[5], &n_threads))
        return NULL;
    if (get_params(params_obj, &storage, &p) < 0)
        return NULL;
    for (i = 0; i < 6; i++) {
        if (get_pointer(objs[i], &views[i], i >= 4, &ptr[i]) < 0) {
            while (i-- > 0)
                PyBuffer_Release(&views[i]);
            return NULL;
        }
    }
    prepared_len = ptr[2] != NULL ? views[2].len / views[2].itemsize : 0;
    workspace_len = ptr[5] != NULL ? views[5].len / views[5].itemsize : 0;
#define CALL(entry) convt_blas_API->entry(p, ptr[0], sn, sc, sl, ptr[1], ptr[2], prepared_len, \
                                          ptr[3], ptr[4], ptr[5], workspace_len, n_threads)
    Py_BEGIN_ALLOW_THREADS
    switch (dtype[0]) {
    case 'f': status = CALL(conv_transpose1d_prepared_f32); break;
    case 'd': status = CALL(conv_transpose1d_prepared_f64); break;
    case 'F': status = CALL(conv_transpose1d_prepared_c64); break;
    case 'D': status = CALL(conv_transpose1d_prepared_c128); break;
    default: status = 1;
    }
    Py_END_ALLOW_THREADS
#undef CALL
    for (i = 0; i < 6; i++)
        PyBuffer_Release(&views[i]);
    if (status == 1) {
        PyErr_Format(PyExc_ValueError, "unknown dtype code %s", dtype);
        return NULL;
    }
    return PyLong_FromLong(status);
}

/* call_backward(dtype, params, grad_output, x, w, grad_input, grad_weight, grad_bias,
 * workspace, n_threads) -> status; None stands for NULL and the workspace length is
 * the workspace buffer's element count. */
static PyObject *call_backward(PyObject *self, PyObject *args)
{
    const char *dtype;
    PyObject *params_obj, *objs[7];
    int n_threads, i, status = 0;
    convt_blas_params storage;
    const convt_blas_params *p;
    Py_buffer views[7];
    void *ptr[7];
    int64_t workspace_len;

    if (!PyArg_ParseTuple(args, "sOOOOOOOOi", &dtype, &params_obj, &objs[0], &objs[1],
                          &objs[2], &objs[3], &objs[4], &objs[5], &objs[6], &n_threads))
        return NULL;
    if (get_params(params_obj, &storage, &p) < 0)
        return NULL;
    for (i = 0; i < 7; i++) {
        if (get_pointer(objs[i], &views[i], i >= 3, &ptr[i]) < 0) {
            while (i-- > 0)
                PyBuffer_Release(&views[i]);
            return NULL;
        }
    }
    workspace_len = ptr[6] != NULL ? views[6].len / views[6].itemsize : 0;
#define CALL(entry) convt_blas_API->entry(p, ptr[0], ptr[1], ptr[2], ptr[3], ptr[4], ptr[5], \
                                          ptr[6], workspace_len, n_threads)
    Py_BEGIN_ALLOW_THREADS
    switch (dtype[0]) {
    case 'f': status = CALL(conv_transpose1d_backward_f32); break;
    case 'd': status = CALL(conv_transpose1d_backward_f64); break;
    case 'F': status = CALL(conv_transpose1d_backward_c64); break;
    case 'D': status = CALL(conv_transpose1d_backward_c128); break;
    default: status = 1;
    }
    Py_END_ALLOW_THREADS
#undef CALL
    for (i = 0; i < 7; i++)
        PyBuffer_Release(&views[i]);
    if (status == 1) {
        PyErr_Format(PyExc_ValueError, "unknown dtype code %s", dtype);
        return NULL;
    }
    return PyLong_FromLong(status);
}

/* Call a table entry of type int64_t (*)(const convt_blas_params *[, int]) on (params[, n]). */
static PyObject *sizes(PyObject *self, PyObject *args)
{
    const char *name;
    PyObject *params_obj;
    int n_threads = 1;
    convt_blas_params storage;
    const convt_blas_params *p;

    if (!PyArg_ParseTuple(args, "sO|i", &name, &params_obj, &n_threads))
        return NULL;
    if (get_params(params_obj, &storage, &p) < 0)
        return NULL;
    if (strcmp(name, "output_length") == 0)
        return PyLong_FromLongLong(convt_blas_API->output_length(p));
    if (strcmp(name, "workspace_length") == 0)
        return PyLong_FromLongLong(convt_blas_API->workspace_length(p, n_threads));
    if (strcmp(name, "units_per_sample") == 0)
        return PyLong_FromLongLong(convt_blas_API->units_per_sample(p));
    if (strcmp(name, "prepared_weight_length") == 0)
        return PyLong_FromLongLong(convt_blas_API->prepared_weight_length(p));
    if (strcmp(name, "workspace_length_prepared") == 0)
        return PyLong_FromLongLong(convt_blas_API->workspace_length_prepared(p, n_threads));
    if (strcmp(name, "backward_workspace_length") == 0)
        return PyLong_FromLongLong(convt_blas_API->backward_workspace_length(p, n_threads));
    return PyErr_Format(PyExc_ValueError, "no table entry %s", name);
}

static PyObject *strerror_(PyObject *self, PyObject *args)
{
    int status;
    if (!PyArg_ParseTuple(args, "i", &status))
        return NULL;
    return PyUnicode_FromString(convt_blas_strerror(status));
}

/* (address of the table in use, its ABI and API versions). */
static PyObject *table(PyObject *self, PyObject *unused)
{
    return Py_BuildValue("(KII)", (unsigned long long)(uintptr_t)convt_blas_API,
                         convt_blas_API->abi_version, convt_blas_API->api_version);
}

/* Forget the table and fetch it again through import_convt_blas(). */
static PyObject *reimport(PyObject *self, PyObject *unused)
{
    const convt_blas_api *previous = convt_blas_API;
    convt_blas_API = NULL;
    if (import_convt_blas() < 0) {
        convt_blas_API = previous;
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"call", call, METH_VARARGS, NULL},
    {"prepare", prepare, METH_VARARGS, NULL},
    {"call_prepared", call_prepared, METH_VARARGS, NULL},
    {"call_backward", call_backward, METH_VARARGS, NULL},
    {"sizes", sizes, METH_VARARGS, NULL},
    {"strerror", strerror_, METH_VARARGS, NULL},
    {"table", table, METH_NOARGS, NULL},
    {"reimport", reimport, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "c_api_harness", NULL, -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit_c_api_harness(void)
{
    PyObject *m;
    if (import_convt_blas() < 0)
        return NULL;
    m = PyModule_Create(&module);
    if (m == NULL
            || PyModule_AddIntConstant(m, "ABI_VERSION", CONVT_BLAS_ABI_VERSION) < 0
            || PyModule_AddIntConstant(m, "API_VERSION", CONVT_BLAS_API_VERSION) < 0
            || PyModule_AddIntConstant(m, "TABLE_SIZE", (long)sizeof(convt_blas_api)) < 0
            || PyModule_AddIntConstant(m, "OK", CONVT_BLAS_OK) < 0
            || PyModule_AddIntConstant(m, "ERR_NULL_POINTER", CONVT_BLAS_ERR_NULL_POINTER) < 0
            || PyModule_AddIntConstant(m, "ERR_BAD_SHAPE", CONVT_BLAS_ERR_BAD_SHAPE) < 0
            || PyModule_AddIntConstant(m, "ERR_BAD_STRIDES", CONVT_BLAS_ERR_BAD_STRIDES) < 0
            || PyModule_AddIntConstant(m, "ERR_WORKSPACE_TOO_SMALL",
                                       CONVT_BLAS_ERR_WORKSPACE_TOO_SMALL) < 0
            || PyModule_AddIntConstant(m, "ERR_OVERFLOW", CONVT_BLAS_ERR_OVERFLOW) < 0
            || PyModule_AddIntConstant(m, "ERR_NO_MEMORY", CONVT_BLAS_ERR_NO_MEMORY) < 0
            || PyModule_AddIntConstant(m, "ERR_BAD_PREPARED", CONVT_BLAS_ERR_BAD_PREPARED) < 0) {
        Py_XDECREF(m);
        return NULL;
    }
    return m;
}
