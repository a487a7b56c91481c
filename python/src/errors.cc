#include "errors.h"

#include <vector>

namespace py = pybind11;

namespace trellis::python {
namespace {

// Owned for the life of the interpreter (module objects are never freed).
PyObject* g_base = nullptr;
PyObject* g_by_code[16] = {};
PyObject* g_unsupported_type = nullptr;

// Creates trellis.<name> deriving from TrellisError and `builtin`.
PyObject* MakeClass(py::module_& m, const char* name, PyObject* builtin,
                    const char* doc) {
  py::dict body;
  body["__module__"] = "trellis";
  body["__doc__"] = doc;
  // KeyError's str() quotes its message; show ours as written.
  body["__str__"] =
      py::module_::import("builtins").attr("BaseException").attr("__str__");
  py::tuple bases = py::make_tuple(py::handle(g_base), py::handle(builtin));
  std::string qualified = std::string("trellis.") + name;
  PyObject* cls =
      PyErr_NewException(qualified.c_str(), bases.ptr(), body.ptr());
  if (!cls) throw py::error_already_set();
  m.add_object(name, py::handle(cls));  // the module keeps a reference too
  return cls;
}

}  // namespace

void RegisterErrors(py::module_& m) {
  py::dict base_body;
  base_body["__module__"] = "trellis";
  base_body["__doc__"] = "Base class of every error raised by trellis.";
  g_base = PyErr_NewException("trellis.TrellisError", PyExc_Exception,
                              base_body.ptr());
  if (!g_base) throw py::error_already_set();
  m.add_object("TrellisError", py::handle(g_base));

  // The class ThrowIfError raises for each code.
  struct {
    StatusCode code;
    const char* name;
    PyObject* builtin;
    const char* doc;
  } const classes[] = {
      {StatusCode::kObjectNotFound, "ObjectNotFound", PyExc_KeyError,
       "No object, blob or name with that key."},
      {StatusCode::kObjectExists, "ObjectExists", PyExc_ValueError,
       "A name or id that must be new is taken."},
      {StatusCode::kNotSealed, "NotSealed", PyExc_RuntimeError,
       "The object is still being written."},
      {StatusCode::kOutOfMemory, "OutOfMemory", PyExc_MemoryError,
       "The daemon's arena cannot hold the request."},
      {StatusCode::kInvalid, "InvalidArgument", PyExc_ValueError,
       "Malformed input or a call that breaks a rule."},
      {StatusCode::kIOError, "TrellisIOError", PyExc_OSError,
       "A system call failed."},
      {StatusCode::kDisconnected, "DaemonNotReachable", PyExc_ConnectionError,
       "No daemon serves the socket, or the connection was lost."},
      {StatusCode::kTimeout, "Timeout", PyExc_TimeoutError,
       "A blocking call ran out of time."},
      {StatusCode::kNotImplemented, "Unsupported", PyExc_NotImplementedError,
       "Recognised but not supported by this daemon or build."},
  };
  for (const auto& c : classes) {
    g_by_code[static_cast<int>(c.code)] =
        MakeClass(m, c.name, c.builtin, c.doc);
  }
  g_unsupported_type =
      MakeClass(m, "UnsupportedType", PyExc_TypeError,
                "A Python value that trellis cannot store (the message says "
                "why).");
}

void ThrowIfError(const Status& status) {
  if (status.ok()) return;
  int c = static_cast<int>(status.code());
  PyObject* cls = (c > 0 && c < 16 && g_by_code[c]) ? g_by_code[c] : g_base;
  // Messages already name the object, blob or name involved.
  PyErr_SetString(cls, status.message().c_str());
  throw py::error_already_set();
}

void ThrowInvalid(const std::string& message) {
  ThrowIfError(Status::Invalid(message));
  __builtin_unreachable();
}

void ThrowUnsupportedType(const std::string& message) {
  PyErr_SetString(g_unsupported_type, message.c_str());
  throw py::error_already_set();
}

}  // namespace trellis::python
