// edgec-run: run an edgec model bundle on the board.
//
//   edgec-run [-d DIR] [-n RUNS] [-w WARMUP] [-o OUTDIR] [--random] [NAME=FILE.npy | FILE.npy ...]
//
// DIR is the bundle directory (default: the directory holding this program). It holds model.so,
// manifest.json, libtvm_runtime.so and libtvm_ffi.so, and for a CUDA model (a Jetson target:
// manifest.json's tvm_target has kind "cuda") libtvm_runtime_cuda.so, which edgec-run loads
// before model.so. Inputs are .npy files, given as NAME=FILE
// or, without names, in the manifest's input order; --random fills every input with reproducible
// pseudo-random values instead (for timing only). Each input's name, shape and dtype are checked
// against manifest.json before anything runs. The model runs WARMUP times unmeasured, then RUNS
// times (default 1) with the wall time of each run printed; outputs of the last run are written
// to OUTDIR/<output name>.npy when -o is given (names made file names by OutputFiles, the rule of
// edgec.driver.output_files).
//
// A CUDA model runs on GPU 0 (device kDLCUDA): after the model is loaded, edgec-run asks the CUDA
// runtime for the devices (cudaGetDeviceCount), so that a driver older than the runtime
// (cudaErrorInsufficientDriver) or no GPU is one clear message; then the inputs are copied to the
// GPU, each run is timed up to the end of its GPU work (a stream sync) and the outputs are copied
// back to the host. A CPU model goes through the same copies and sync, on the CPU.
//
// Exit status: 0 on success, 2 on bad arguments or inputs, 1 when the model fails to load or run.
//
// Built by edgec (targets/bundle.py) with aarch64-linux-gnu-g++ or `zig c++` against the aarch64
// libtvm_ffi.so and libtvm_runtime.so of the pinned apache-tvm wheels.

#include <dlpack/dlpack.h>
#include <tvm/ffi/any.h>
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/map.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/extra/json.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/string.h>
#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace ffi = tvm::ffi;

namespace {

// An error in the user's arguments or inputs (exit status 2).
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// One element type: the edgec name in manifest.json, the .npy descr, the DLPack type.
struct DType {
  const char* edgec;
  const char* npy;
  DLDataType dl;
};

const DType kDTypes[] = {
    {"f64", "<f8", {kDLFloat, 64, 1}}, {"f32", "<f4", {kDLFloat, 32, 1}},
    {"f16", "<f2", {kDLFloat, 16, 1}}, {"i64", "<i8", {kDLInt, 64, 1}},
    {"i32", "<i4", {kDLInt, 32, 1}},   {"i16", "<i2", {kDLInt, 16, 1}},
    {"i8", "|i1", {kDLInt, 8, 1}},     {"u64", "<u8", {kDLUInt, 64, 1}},
    {"u32", "<u4", {kDLUInt, 32, 1}},  {"u16", "<u2", {kDLUInt, 16, 1}},
    {"u8", "|u1", {kDLUInt, 8, 1}},    {"bool", "|b1", {kDLBool, 8, 1}},
};

const DType& DTypeByEdgec(const std::string& name) {
  for (const DType& d : kDTypes)
    if (name == d.edgec) return d;
  throw UsageError("manifest.json names an unknown dtype '" + name + "'");
}

const DType* DTypeByNpy(std::string descr) {
  if (descr.size() == 3 && descr[0] == '=') descr[0] = '<';  // native order is little-endian here
  if (descr.size() == 3 && (descr[1] == 'i' || descr[1] == 'u' || descr[1] == 'b') && descr[2] == '1')
    descr[0] = '|';
  for (const DType& d : kDTypes)
    if (descr == d.npy) return &d;
  return nullptr;
}

struct TensorSpec {
  std::string name;
  const DType* dtype;
  std::vector<int64_t> shape;
};

struct HostArray {
  const DType* dtype = nullptr;
  std::vector<int64_t> shape;
  std::vector<char> data;
};

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

int64_t NumElements(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

size_t ElementBytes(const DType& d) { return (d.dl.bits + 7) / 8; }

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw UsageError("cannot read " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// --- .npy (format versions 1-3, C order, little-endian) ------------------------------------

std::string HeaderField(const std::string& header, const std::string& key) {
  size_t k = header.find("'" + key + "'");
  if (k == std::string::npos) return "";
  size_t colon = header.find(':', k);
  size_t start = header.find_first_not_of(" ", colon + 1);
  if (header[start] == '(') return header.substr(start + 1, header.find(')', start) - start - 1);
  if (header[start] == '\'') return header.substr(start + 1, header.find('\'', start + 1) - start - 1);
  size_t end = header.find_first_of(",}", start);
  return header.substr(start, end - start);
}

HostArray ReadNpy(const std::string& path) {
  std::string bytes = ReadFile(path);
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0)
    throw UsageError(path + " is not a .npy file");
  int major = static_cast<unsigned char>(bytes[6]);
  size_t header_len, offset;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
    offset = 10;
  } else {
    header_len = 0;
    for (int i = 0; i < 4; ++i) header_len |= static_cast<size_t>(static_cast<unsigned char>(bytes[8 + i])) << (8 * i);
    offset = 12;
  }
  std::string header = bytes.substr(offset, header_len);
  HostArray a;
  std::string descr = HeaderField(header, "descr");
  a.dtype = DTypeByNpy(descr);
  if (a.dtype == nullptr) throw UsageError(path + ": unsupported .npy dtype '" + descr + "'");
  if (HeaderField(header, "fortran_order").find("True") != std::string::npos)
    throw UsageError(path + ": Fortran-order arrays are not supported; save a C-order array");
  std::stringstream dims(HeaderField(header, "shape"));
  std::string item;
  while (std::getline(dims, item, ',')) {
    if (item.find_first_not_of(" ") == std::string::npos) continue;
    a.shape.push_back(std::stoll(item));
  }
  size_t nbytes = NumElements(a.shape) * ElementBytes(*a.dtype);
  if (bytes.size() < offset + header_len + nbytes) throw UsageError(path + ": the file is truncated");
  a.data.assign(bytes.begin() + offset + header_len, bytes.begin() + offset + header_len + nbytes);
  return a;
}

void WriteNpy(const std::string& path, const DType& dtype, const std::vector<int64_t>& shape,
              const void* data, size_t nbytes) {
  std::string dims;  // numpy's tuple syntax: (), (3,), (2, 3)
  for (size_t i = 0; i < shape.size(); ++i) dims += (i ? ", " : "") + std::to_string(shape[i]);
  if (shape.size() == 1) dims += ",";
  std::string header = std::string("{'descr': '") + dtype.npy + "', 'fortran_order': False, 'shape': (" + dims + "), }";
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::ofstream f(path, std::ios::binary);
  if (!f) throw UsageError("cannot write " + path);
  f.write("\x93NUMPY\x01\x00", 8);
  uint16_t len = static_cast<uint16_t>(header.size());
  char len_bytes[2] = {static_cast<char>(len & 0xff), static_cast<char>(len >> 8)};
  f.write(len_bytes, 2);
  f.write(header.data(), header.size());
  f.write(static_cast<const char*>(data), nbytes);
}

// The .npy file name of each output, the rule of edgec.driver.output_files: the name's first 200
// bytes with every byte but ASCII letters, digits, '_', '.' and '-' turned into '_' ("output" if
// that leaves nothing), then ".npy"; a file name already taken gets "_2", "_3", ... before ".npy".
std::vector<std::string> OutputFiles(const std::vector<std::string>& names) {
  std::vector<std::string> files;
  for (const std::string& name : names) {
    std::string stem = name.substr(0, 200);
    for (char& c : stem) {
      bool safe = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
                  c == '.' || c == '-';
      if (!safe) c = '_';
    }
    if (stem.empty()) stem = "output";
    std::string file = stem + ".npy";
    for (int k = 2; std::find(files.begin(), files.end(), file) != files.end(); ++k)
      file = stem + "_" + std::to_string(k) + ".npy";
    files.push_back(file);
  }
  return files;
}

// --- manifest.json ---------------------------------------------------------------------------

std::vector<TensorSpec> ReadSpecs(const ffi::Map<ffi::String, ffi::Any>& manifest, const char* key) {
  std::vector<TensorSpec> specs;
  for (const ffi::Any& item : manifest[key].cast<ffi::Array<ffi::Any>>()) {
    auto entry = item.cast<ffi::Map<ffi::String, ffi::Any>>();
    TensorSpec s;
    s.name = std::string(entry["name"].cast<ffi::String>());
    s.dtype = &DTypeByEdgec(std::string(entry["dtype"].cast<ffi::String>()));
    for (const ffi::Any& d : entry["shape"].cast<ffi::Array<ffi::Any>>()) s.shape.push_back(d.cast<int64_t>());
    specs.push_back(s);
  }
  return specs;
}

// Whether the model's kernels are CUDA kernels: manifest.json's "tvm_target" is a CUDA target.
bool IsCudaModel(const ffi::Map<ffi::String, ffi::Any>& manifest) {
  if (!manifest.count("tvm_target")) return false;
  auto target = manifest["tvm_target"].try_cast<ffi::Map<ffi::String, ffi::Any>>();
  if (!target || !target->count("kind")) return false;
  auto kind = (*target)["kind"].try_cast<ffi::String>();
  return kind && std::string(*kind) == "cuda";
}

struct CPUAlloc {
  void AllocData(DLTensor* t) {
    size_t n = ffi::GetDataSize(*t);
    t->data = std::aligned_alloc(64, (n + 63) / 64 * 64 + 64);
  }
  void FreeData(DLTensor* t) { std::free(t->data); }
};

// --- CUDA ----------------------------------------------------------------------------------------

constexpr int kCudaErrorInsufficientDriver = 35;
constexpr int kCudaErrorNoDevice = 100;

// Load TVM's CUDA runtime library from the bundle (global, so model.so's CUDA module finds its
// loader). It links libcudart.so.13 (from the bundle too, by its RUNPATH $ORIGIN) and the
// driver's libcuda.so.1.
void LoadCudaRuntime(const std::string& dir) {
  std::string path = dir + "/libtvm_runtime_cuda.so";
  if (dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL) != nullptr) return;
  std::string error = dlerror();
  std::string hint = error.find("libcuda.so.1") != std::string::npos
                         ? "libcuda.so.1 is the NVIDIA driver's library: run this on the Jetson (see README.txt)"
                         : "copy the whole bundle directory to the board";
  throw std::runtime_error("cannot load TVM's CUDA runtime: " + error + "; " + hint);
}

// Fail with one clear message unless the CUDA runtime sees a GPU. The runtime is already loaded
// (a dependency of libtvm_runtime_cuda.so); its entry points are looked up by name, so that the
// runner needs no CUDA headers and its CPU use no CUDA libraries.
void CheckCudaDevice() {
  void* cudart = dlopen("libcudart.so.13", RTLD_NOW | RTLD_NOLOAD);
  if (cudart == nullptr) throw std::runtime_error("the CUDA runtime libcudart.so.13 is not loaded");
  auto get_count = reinterpret_cast<int (*)(int*)>(dlsym(cudart, "cudaGetDeviceCount"));
  auto error_name = reinterpret_cast<const char* (*)(int)>(dlsym(cudart, "cudaGetErrorName"));
  auto error_string = reinterpret_cast<const char* (*)(int)>(dlsym(cudart, "cudaGetErrorString"));
  if (!get_count || !error_name || !error_string)
    throw std::runtime_error("libcudart.so.13 lacks cudaGetDeviceCount/cudaGetErrorName/cudaGetErrorString");
  int count = 0;
  int status = get_count(&count);
  if (status == 0 && count > 0) return;
  const char* no_gpu = "the CUDA runtime sees no GPU; run this on the Jetson, as a user allowed to use the GPU";
  if (status == 0) throw std::runtime_error(std::string("CUDA device init failed: ") + no_gpu);
  std::string what =
      std::string("CUDA device init failed: ") + error_name(status) + " (" + std::to_string(status) + "): ";
  if (status == kCudaErrorInsufficientDriver)
    throw std::runtime_error(what + "the board's driver is older than CUDA 13; this bundle needs JetPack 7 "
                             "(see README.txt)");
  throw std::runtime_error(what + (status == kCudaErrorNoDevice ? no_gpu : error_string(status)));
}

ffi::Tensor DeviceTensor(const TensorSpec& s, DLDevice device) {
  static const ffi::Function alloc = ffi::Function::GetGlobalRequired("runtime.TVMTensorAllocWithScope");
  return alloc(ffi::Shape(s.shape), s.dtype->dl, device, nullptr).cast<ffi::Tensor>();
}

void CopyToDevice(const ffi::Tensor& host, const ffi::Tensor& device) {
  static const ffi::Function copy = ffi::Function::GetGlobalRequired("runtime.TVMTensorCopyFromBytes");
  copy(device, host.data_ptr(), static_cast<int64_t>(ffi::GetDataSize(host)));
}

// Waits for the copy to finish (TVM syncs the device's stream).
void CopyToHost(const ffi::Tensor& device, const ffi::Tensor& host) {
  static const ffi::Function copy = ffi::Function::GetGlobalRequired("runtime.TVMTensorCopyToBytes");
  copy(device, host.data_ptr(), static_cast<int64_t>(ffi::GetDataSize(host)));
}

// Waits for the work on the device's default stream (TVM takes the stream handle as an integer).
void SyncDevice(DLDevice device) {
  static const ffi::Function sync = ffi::Function::GetGlobalRequired("runtime.Device_StreamSync");
  sync(device, static_cast<int64_t>(0));
}

std::string ProgramDir(const char* argv0) {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  std::string exe = n > 0 ? std::string(buf, n) : std::string(argv0);
  size_t slash = exe.rfind('/');
  return slash == std::string::npos ? "." : exe.substr(0, slash);
}

void FillRandom(HostArray& a) {
  uint32_t state = 12345;
  int64_t n = NumElements(a.shape);
  for (int64_t i = 0; i < n; ++i) {
    state = state * 1664525u + 1013904223u;
    double u = (state >> 8) / 16777216.0;  // [0, 1)
    char* p = a.data.data() + i * ElementBytes(*a.dtype);
    switch (a.dtype->dl.code) {
      case kDLFloat:
        if (a.dtype->dl.bits == 32) *reinterpret_cast<float*>(p) = static_cast<float>(u * 2 - 1);
        else if (a.dtype->dl.bits == 64) *reinterpret_cast<double*>(p) = u * 2 - 1;
        else std::memset(p, 0, 2);
        break;
      case kDLBool:
        *p = u < 0.5;
        break;
      default:  // integers: small non-negative values, valid as indices too
        std::memset(p, 0, ElementBytes(*a.dtype));
        *p = static_cast<char>(u * 2);
    }
  }
}

int Run(int argc, char** argv) {
  std::string dir = ProgramDir(argv[0]), out_dir;
  int runs = 1, warmup = 0;
  bool random = false;
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw UsageError(a + " needs a value");
      return argv[++i];
    };
    if (a == "-d") dir = value();
    else if (a == "-n") runs = std::stoi(value());
    else if (a == "-w") warmup = std::stoi(value());
    else if (a == "-o") out_dir = value();
    else if (a == "--random") random = true;
    else if (a == "-h" || a == "--help") {
      std::printf("usage: edgec-run [-d DIR] [-n RUNS] [-w WARMUP] [-o OUTDIR] [--random] "
                  "[NAME=FILE.npy | FILE.npy ...]\n");
      return 0;
    } else args.push_back(a);
  }
  if (runs < 1) throw UsageError("-n must be at least 1");

  ffi::String error;
  ffi::json::Value parsed = ffi::json::Parse(ffi::String(ReadFile(dir + "/manifest.json")), &error);
  if (!error.empty()) throw UsageError(dir + "/manifest.json is not valid JSON: " + std::string(error));
  auto manifest = parsed.cast<ffi::Map<ffi::String, ffi::Any>>();
  std::vector<TensorSpec> inputs = ReadSpecs(manifest, "inputs"), outputs = ReadSpecs(manifest, "outputs");
  const bool cuda = IsCudaModel(manifest);
  const DLDevice cpu{kDLCPU, 0}, device = cuda ? DLDevice{kDLCUDA, 0} : cpu;

  // Inputs by name (NAME=FILE) or by position, checked against the manifest.
  std::map<std::string, HostArray> given;
  if (random) {
    if (!args.empty()) throw UsageError("--random takes no input files");
    for (const TensorSpec& s : inputs) {
      HostArray a{s.dtype, s.shape, std::vector<char>(NumElements(s.shape) * ElementBytes(*s.dtype))};
      FillRandom(a);
      given[s.name] = a;
    }
  }
  for (size_t i = 0; i < args.size(); ++i) {
    size_t eq = args[i].find('=');
    std::string name, path = args[i];
    if (eq != std::string::npos) {
      name = args[i].substr(0, eq);
      path = args[i].substr(eq + 1);
    } else if (i < inputs.size()) {
      name = inputs[i].name;
    } else {
      throw UsageError("more input files than the model's " + std::to_string(inputs.size()) + " inputs");
    }
    if (given.count(name)) throw UsageError("input '" + name + "' is given twice");
    given[name] = ReadNpy(path);
  }
  for (const auto& kv : given) {
    bool known = std::any_of(inputs.begin(), inputs.end(), [&](const TensorSpec& s) { return s.name == kv.first; });
    if (!known) throw UsageError("unknown input '" + kv.first + "'");
  }
  std::vector<ffi::Tensor> tensors;
  for (const TensorSpec& s : inputs) {
    auto it = given.find(s.name);
    if (it == given.end()) throw UsageError("missing input '" + s.name + "' (" + s.dtype->edgec + ShapeText(s.shape) + ")");
    const HostArray& a = it->second;
    if (a.dtype != s.dtype || a.shape != s.shape)
      throw UsageError("input '" + s.name + "' is " + a.dtype->edgec + ShapeText(a.shape) + "; the model expects " +
                       s.dtype->edgec + ShapeText(s.shape));
    ffi::Tensor t = ffi::Tensor::FromNDAlloc(CPUAlloc(), ffi::ShapeView(s.shape.data(), s.shape.size()), s.dtype->dl,
                                             cpu);
    std::memcpy(t.data_ptr(), a.data.data(), a.data.size());
    tensors.push_back(t);
  }

  // Load the library and its Relax VM executable (a CUDA model's kernels need TVM's CUDA runtime
  // first), then the device; create the VM there with pooled allocators (for CUDA the CPU too,
  // which runs the shape code), get `main`.
  std::string library = dir + "/" + std::string(manifest["library"].cast<ffi::String>());
  if (cuda) LoadCudaRuntime(dir);
  ffi::Module lib = ffi::Module::LoadFromFile(library);
  ffi::Module vm = lib->GetFunction("vm_load_executable").value()().cast<ffi::Module>();
  std::printf("loaded %s for %s\n", library.c_str(), cuda ? "cuda" : "cpu");
  std::fflush(stdout);
  if (cuda) {
    CheckCudaDevice();
    vm->GetFunction("vm_initialization").value()(static_cast<int>(kDLCUDA), 0, 2, static_cast<int>(kDLCPU), 0, 2);
  } else {
    vm->GetFunction("vm_initialization").value()(static_cast<int>(kDLCPU), 0, 2);
  }
  // The inputs, copied to the device. A CPU model takes the same path (a copy into a tensor TVM
  // allocates on the CPU), so that every run of a CPU bundle checks the code of the CUDA one.
  for (size_t i = 0; i < tensors.size(); ++i) {
    ffi::Tensor on_device = DeviceTensor(inputs[i], device);
    CopyToDevice(tensors[i], on_device);
    tensors[i] = on_device;
  }
  ffi::Function main_fn = vm->GetFunction("main").value();

  std::vector<ffi::AnyView> call_args(tensors.begin(), tensors.end());
  ffi::Any result;
  auto call = [&]() {
    main_fn.CallPacked(call_args.data(), static_cast<int32_t>(call_args.size()), &result);
    SyncDevice(device);  // CUDA kernels run asynchronously: a run ends when the GPU is done
  };
  for (int i = 0; i < warmup; ++i) call();
  std::vector<double> ms;
  for (int i = 0; i < runs; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    call();
    auto t1 = std::chrono::steady_clock::now();
    ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    std::printf("run %d: %.3f ms\n", i + 1, ms.back());
  }
  std::vector<double> sorted = ms;
  std::sort(sorted.begin(), sorted.end());
  double median = sorted.size() % 2 ? sorted[sorted.size() / 2]
                                    : (sorted[sorted.size() / 2 - 1] + sorted[sorted.size() / 2]) / 2;
  std::printf("latency: median %.3f ms, min %.3f ms, max %.3f ms over %d runs\n", median, sorted.front(),
              sorted.back(), runs);

  // Outputs: `main` returns a tuple (an ffi Array) of tensors in the manifest's order.
  std::vector<ffi::Tensor> results;
  if (auto arr = result.try_cast<ffi::Array<ffi::Any>>()) {
    for (const ffi::Any& r : *arr) results.push_back(r.cast<ffi::Tensor>());
  } else {
    results.push_back(result.cast<ffi::Tensor>());
  }
  if (results.size() != outputs.size())
    throw std::runtime_error("the model returned " + std::to_string(results.size()) + " outputs; the manifest lists " +
                             std::to_string(outputs.size()));
  std::vector<std::string> names;
  for (const TensorSpec& s : outputs) names.push_back(s.name);
  std::vector<std::string> files = OutputFiles(names);
  for (size_t i = 0; i < outputs.size(); ++i) {
    ffi::Tensor t = results[i];
    std::vector<int64_t> shape(t.shape().begin(), t.shape().end());
    if (shape != outputs[i].shape || !(t.dtype() == outputs[i].dtype->dl))
      throw std::runtime_error("output '" + outputs[i].name + "' has shape " + ShapeText(shape) +
                               ", the manifest says " + outputs[i].dtype->edgec + ShapeText(outputs[i].shape));
    ffi::Tensor host = ffi::Tensor::FromNDAlloc(CPUAlloc(), t.shape(), t.dtype(), cpu);
    CopyToHost(t, host);  // from the device (for a CPU model a copy too, as for the inputs)
    t = host;
    std::printf("output %s: %s%s\n", outputs[i].name.c_str(), outputs[i].dtype->edgec, ShapeText(shape).c_str());
    if (!out_dir.empty()) {
      WriteNpy(out_dir + "/" + files[i], *outputs[i].dtype, shape,
               static_cast<const char*>(t.data_ptr()) + t.byte_offset(), ffi::GetDataSize(t));
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Run(argc, argv);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "edgec-run: %s\n", e.what());
    return 2;
  } catch (const ffi::Error& e) {
    std::fprintf(stderr, "edgec-run: TVM error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "edgec-run: %s\n", e.what());
    return 1;
  }
}
