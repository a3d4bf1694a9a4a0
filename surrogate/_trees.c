/* Oblivious trees summed in C for a few rows (surrogate/trees.py calls it): numpy's copy makes temporary arrays
 * of every split of thousands of trees for one row, a loop over the splits does not.
 *
 * leaf_sums(X, n_features, features, borders, leaves, depth, out): for each row r of the float64 matrix X
 * (rows x n_features, C order, at most 256 features), out[r] = sum over trees t of leaves[t][leaf], where bit j
 * of leaf says whether (float)X[r][features[t][j]] > borders[t][j] (uint8 feature indices, float32 borders as
 * CatBoost stores them). Trees are added in order. The caller checks every feature index against n_features. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

static PyObject *leaf_sums(PyObject *self, PyObject *args) {
    Py_buffer bx, bf, bb, bl, bo;
    Py_ssize_t n_features, depth;
    if (!PyArg_ParseTuple(args, "y*ny*y*y*nw*", &bx, &n_features, &bf, &bb, &bl, &depth, &bo))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t rows = bo.len / (Py_ssize_t)sizeof(double);
    Py_ssize_t splits = bf.len;
    Py_ssize_t trees = depth > 0 ? splits / depth : 0;
    Py_ssize_t width = (Py_ssize_t)1 << (depth > 0 && depth <= 8 ? depth : 0);
    if (depth < 1 || depth > 8 || n_features < 1 || n_features > 256 || splits != trees * depth
        || bb.len != splits * (Py_ssize_t)sizeof(float) || bl.len != trees * width * (Py_ssize_t)sizeof(double)
        || bx.len != rows * n_features * (Py_ssize_t)sizeof(double)) {
        PyErr_SetString(PyExc_ValueError, "leaf_sums: buffer sizes do not match the trees' shape");
        goto done;
    }
    const double *x = bx.buf, *leaves = bl.buf;
    const uint8_t *features = bf.buf;
    const float *borders = bb.buf;
    double *out = bo.buf;
    /* Leaf numbers first, then the leaves: the second loop's loads are independent of one another, so a row whose
     * trees are not in cache waits for many of them at once instead of one tree at a time. */
    uint8_t *leaf = PyMem_Malloc(trees > 0 ? (size_t)trees : 1);
    float *row = PyMem_Malloc((size_t)n_features * sizeof(float));
    if (!leaf || !row) {
        PyMem_Free(leaf);
    PyMem_Free(row);
        PyMem_Free(row);
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t r = 0; r < rows; r++) {
        for (Py_ssize_t i = 0; i < n_features; i++)
            row[i] = (float)x[r * n_features + i];
        for (Py_ssize_t t = 0; t < trees; t++) {
            const uint8_t *f = features + t * depth;
            const float *b = borders + t * depth;
            unsigned k = 0;
            for (Py_ssize_t j = 0; j < depth; j++)
                k |= (unsigned)(row[f[j]] > b[j]) << j;
            leaf[t] = (uint8_t)k;
        }
        double sum = 0.0;
        for (Py_ssize_t t = 0; t < trees; t++)
            sum += leaves[t * width + leaf[t]];
        out[r] = sum;
    }
    PyMem_Free(leaf);
    PyMem_Free(row);
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&bx);
    PyBuffer_Release(&bf);
    PyBuffer_Release(&bb);
    PyBuffer_Release(&bl);
    PyBuffer_Release(&bo);
    return result;
}

static PyMethodDef methods[] = {
    {"leaf_sums", leaf_sums, METH_VARARGS, "Sum of one leaf per oblivious tree, per row."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_trees", NULL, -1, methods};

PyMODINIT_FUNC PyInit__trees(void) { return PyModule_Create(&module); }
