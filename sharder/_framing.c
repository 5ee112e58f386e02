/* The websocket frame parser's hot loop in C: whole unfragmented data frames.
 *
 * scan_frames(data, pos, frames, max_size, out) -> (pos, need, parsed)
 *
 * Appends (opcode, payload) for each consecutive whole, unmasked, unfragmented
 * text or binary frame of ``data`` from ``pos`` (first byte 0x81 or 0x82, at
 * most ``max_size`` bytes of payload), at most ``frames`` of them, and returns
 * where it stopped, how many bytes from there a cut-short frame needs (0 if
 * none) and how many frames it took. It stops without a word at any other
 * frame: sharder/_websocket.py parses and validates that one in Python, which
 * also holds the same loop for when this module is not built
 * (_scan_frames_in_python). Both must agree on every input, errors included;
 * tests/sharder/test_websocket.py checks that.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

static PyObject *
scan_frames(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "scan_frames takes 5 arguments");
        return NULL;
    }
    PyObject *out = args[4];
    if (!PyList_Check(out)) {
        PyErr_SetString(PyExc_TypeError, "scan_frames: out must be a list");
        return NULL;
    }
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    Py_ssize_t frames = PyLong_AsSsize_t(args[2]);
    Py_ssize_t max_size = PyLong_AsSsize_t(args[3]);
    if ((pos == -1 || frames == -1 || max_size == -1) && PyErr_Occurred()) {
        return NULL;
    }
    if (pos < 0 || frames < 0 || max_size < 0) {
        PyErr_SetString(PyExc_ValueError, "scan_frames: a negative argument");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    const unsigned char *buf = (const unsigned char *)view.buf;
    const Py_ssize_t n = view.len;
    Py_ssize_t need = 0, parsed = 0;
    while (parsed < frames) {
        Py_ssize_t avail = n - pos;
        if (avail < 2) {
            need = 2;
            break;
        }
        unsigned char b0 = buf[pos], b1 = buf[pos + 1];
        if (b1 & 0x80) {
            break;  /* masked: Python raises */
        }
        uint64_t length = b1;
        Py_ssize_t start;
        if (b1 < 126) {
            start = pos + 2;
        }
        else if (b1 == 126) {
            if (avail < 4) {
                need = 4;
                break;
            }
            length = ((uint64_t)buf[pos + 2] << 8) | buf[pos + 3];
            start = pos + 4;
        }
        else {
            if (avail < 10) {
                need = 10;
                break;
            }
            length = 0;
            for (int i = 2; i < 10; i++) {
                length = (length << 8) | buf[pos + i];
            }
            start = pos + 10;
        }
        if (b0 != 0x81 && b0 != 0x82) {
            break;  /* not an unfragmented data frame: Python's turn */
        }
        if (length > (uint64_t)max_size) {
            break;  /* too big: Python raises the 1009 */
        }
        if (length > (uint64_t)(PY_SSIZE_T_MAX - start)) {
            break;  /* only with an absurd max_size: Python's integers take it */
        }
        Py_ssize_t end = start + (Py_ssize_t)length;
        if (end > n) {
            need = end - pos;
            break;
        }
        PyObject *payload = PyBytes_FromStringAndSize((const char *)buf + start, end - start);
        if (payload == NULL) {
            goto error;
        }
        PyObject *opcode = PyLong_FromLong(b0 & 0x0F);  /* a cached small int */
        if (opcode == NULL) {
            Py_DECREF(payload);
            goto error;
        }
        PyObject *message = PyTuple_New(2);
        if (message == NULL) {
            Py_DECREF(opcode);
            Py_DECREF(payload);
            goto error;
        }
        PyTuple_SET_ITEM(message, 0, opcode);
        PyTuple_SET_ITEM(message, 1, payload);
        int failed = PyList_Append(out, message);
        Py_DECREF(message);
        if (failed) {
            goto error;
        }
        pos = end;
        parsed++;
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("(nnn)", pos, need, parsed);

error:
    PyBuffer_Release(&view);
    return NULL;
}

static PyMethodDef framing_methods[] = {
    {"scan_frames", (PyCFunction)(void (*)(void))scan_frames, METH_FASTCALL,
     "scan_frames(data, pos, frames, max_size, out) -> (pos, need, parsed)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef framing_module = {
    PyModuleDef_HEAD_INIT,
    "sharder._framing",
    "The websocket frame parser's hot loop in C (see sharder/_websocket.py).",
    0,
    framing_methods,
};

PyMODINIT_FUNC
PyInit__framing(void)
{
    return PyModuleDef_Init(&framing_module);
}
