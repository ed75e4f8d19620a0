/* ort-run: run an ONNX model N times with ONNX Runtime's C API, for instruction counting under qemu.
 *
 *   ort-run LIBONNXRUNTIME.so MODEL.onnx RUNS IN=DTYPE:D0xD1x... [...] -- OUT [...]
 *
 * Loads the library with dlopen (the aarch64 libonnxruntime.so.* from the onnxruntime wheel), makes
 * a session with one intra-op and one inter-op thread (default graph optimizations), fills each input
 * (DTYPE f32 or i64) with reproducible values and runs the model RUNS times. Prints "ort runs: N".
 *
 * ONNX Runtime's C API is a table of function pointers (OrtApi) that only ever grows at the end,
 * so a function's index in the table is fixed across releases. No ONNX Runtime header is available
 * from the package registries, so the few entries used are called by their index below.
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void *Status; /* OrtStatus*: NULL means success */
typedef Status (*CreateEnvFn)(int level, const char *logid, void **out);
typedef Status (*CreateSessionFn)(void *env, const char *path, void *options, void **out);
typedef Status (*RunFn)(void *session, void *run_options, const char *const *in_names, void *const *inputs,
                        size_t n_in, const char *const *out_names, size_t n_out, void **outputs);
typedef Status (*CreateSessionOptionsFn)(void **out);
typedef Status (*SetThreadsFn)(void *options, int n);
typedef Status (*CreateTensorWithDataFn)(void *info, void *data, size_t bytes, const int64_t *shape, size_t ndim,
                                         int elem_type, void **out);
typedef Status (*CreateCpuMemoryInfoFn)(int allocator_type, int mem_type, void **out);
typedef const char *(*GetErrorMessageFn)(Status status);
typedef void (*ReleaseFn)(void *object);

/* Indices in OrtApi (stable: the table is append-only). */
enum {
  GET_ERROR_MESSAGE = 2,
  CREATE_ENV = 3,
  CREATE_SESSION = 7,
  RUN = 9,
  CREATE_SESSION_OPTIONS = 10,
  SET_INTRA_OP_NUM_THREADS = 24,
  SET_INTER_OP_NUM_THREADS = 25,
  CREATE_TENSOR_WITH_DATA = 49,
  CREATE_CPU_MEMORY_INFO = 69,
  RELEASE_VALUE = 96,
};
enum { ONNX_FLOAT = 1, ONNX_INT64 = 7 };
#define API_VERSION 16 /* any version up to the library's own */
#define MAX_TENSORS 64

typedef struct {
  const void *(*GetApi)(uint32_t version);
  const char *(*GetVersionString)(void);
} ApiBase;

static void *const *api;

static void check(Status s, const char *what) {
  if (s != NULL) {
    fprintf(stderr, "ort-run: %s: %s\n", what, ((GetErrorMessageFn)api[GET_ERROR_MESSAGE])(s));
    exit(1);
  }
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: ort-run LIB MODEL RUNS IN=DTYPE:D0xD1... [...] -- OUT [...]\n");
    return 2;
  }
  void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (lib == NULL) {
    fprintf(stderr, "ort-run: %s\n", dlerror());
    return 1;
  }
  const ApiBase *(*get_base)(void) = (const ApiBase *(*)(void))dlsym(lib, "OrtGetApiBase");
  if (get_base == NULL) {
    fprintf(stderr, "ort-run: %s has no OrtGetApiBase\n", argv[1]);
    return 1;
  }
  api = (void *const *)get_base()->GetApi(API_VERSION);
  if (api == NULL) {
    fprintf(stderr, "ort-run: the library does not provide C API version %d\n", API_VERSION);
    return 1;
  }
  int runs = atoi(argv[3]);

  void *env, *options, *session, *info;
  check(((CreateEnvFn)api[CREATE_ENV])(3 /* errors only */, "ort-run", &env), "CreateEnv");
  check(((CreateSessionOptionsFn)api[CREATE_SESSION_OPTIONS])(&options), "CreateSessionOptions");
  check(((SetThreadsFn)api[SET_INTRA_OP_NUM_THREADS])(options, 1), "SetIntraOpNumThreads");
  check(((SetThreadsFn)api[SET_INTER_OP_NUM_THREADS])(options, 1), "SetInterOpNumThreads");
  check(((CreateSessionFn)api[CREATE_SESSION])(env, argv[2], options, &session), "CreateSession");
  check(((CreateCpuMemoryInfoFn)api[CREATE_CPU_MEMORY_INFO])(0 /* device allocator */, 0, &info),
        "CreateCpuMemoryInfo");

  const char *in_names[MAX_TENSORS], *out_names[MAX_TENSORS];
  void *inputs[MAX_TENSORS], *outputs[MAX_TENSORS];
  size_t n_in = 0, n_out = 0;
  int i = 4;
  for (; i < argc && strcmp(argv[i], "--") != 0 && n_in < MAX_TENSORS; ++i) {
    /* NAME=DTYPE:D0xD1x... */
    char *spec = argv[i], *eq = strchr(spec, '='), *colon = eq ? strchr(eq, ':') : NULL;
    if (colon == NULL) {
      fprintf(stderr, "ort-run: bad input spec '%s'\n", spec);
      return 2;
    }
    *eq = '\0';
    int64_t shape[16];
    size_t ndim = 0, count = 1;
    for (char *p = colon + 1; *p && ndim < 16;) {
      shape[ndim] = strtoll(p, &p, 10);
      count *= (size_t)shape[ndim++];
      if (*p == 'x') ++p;
    }
    int is_float = strncmp(eq + 1, "f32", 3) == 0;
    size_t elem = is_float ? 4 : 8;
    void *data = calloc(count ? count : 1, elem);
    uint32_t state = 12345;
    for (size_t k = 0; k < count; ++k) {
      state = state * 1664525u + 1013904223u;
      double u = (state >> 8) / 16777216.0;
      if (is_float) ((float *)data)[k] = (float)(u * 2 - 1);
      else ((int64_t *)data)[k] = (int64_t)(u * 2);
    }
    check(((CreateTensorWithDataFn)api[CREATE_TENSOR_WITH_DATA])(info, data, count * elem, shape, ndim,
                                                                 is_float ? ONNX_FLOAT : ONNX_INT64,
                                                                 &inputs[n_in]),
          "CreateTensorWithDataAsOrtValue");
    in_names[n_in++] = spec;
  }
  for (++i; i < argc && n_out < MAX_TENSORS; ++i) out_names[n_out++] = argv[i];

  for (int r = 0; r < runs; ++r) {
    memset(outputs, 0, sizeof(outputs));
    check(((RunFn)api[RUN])(session, NULL, in_names, inputs, n_in, out_names, n_out, outputs), "Run");
    for (size_t k = 0; k < n_out; ++k) ((ReleaseFn)api[RELEASE_VALUE])(outputs[k]);
  }
  printf("ort runs: %d\n", runs);
  return 0;
}
