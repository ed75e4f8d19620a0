// cuda_cpu_shim.h: run TVM-generated CUDA C kernels on the CPU, one fiber (ucontext) per CUDA thread.
//
// Part of edgec (targets/cuda_cpu.py compiles TVM's CUDA source with g++ against this header).
// Started from the probe shim in the project's shared reference folder (cuda-on-cpu/cpu_cuda),
// written for these probes; no third-party code.
//
// Blocks run one after another; inside a block every CUDA thread is a fiber on one OS thread, so
// `__shared__` (mapped to `static` in the section `cucpu_shared`, filled with 0xff bytes, NaN for
// floats, before each block: a value read before any thread of the block wrote it shows) is shared
// by the block's threads, `__syncthreads()` is a real
// barrier (a fiber parks until every live thread of the block arrived) and warp shuffles exchange
// values through a slot per thread with a warp-wide barrier before and after. `__activemask()` is
// all lanes (TVM emits its shuffles uniformly). Math intrinsics map to libm (`__expf` -> expf): the
// numerics are the CPU's, not the GPU's fast-math ones. A deadlock (some threads at a barrier that
// others never reach) is reported, not hung on. Fibers run in thread order up to each barrier, so a
// missing barrier is caught when that order exposes it (a reader with a lower thread index than
// its writer), not every race a GPU could show.
#pragma once
#include <ucontext.h>
#include <sys/mman.h>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <type_traits>
#include <utility>

struct dim3 { unsigned x = 1, y = 1, z = 1; };
struct uint3 { unsigned x, y, z; };

namespace cucpu {
enum State { RUN, BAR, WARPBAR, DONE };
constexpr size_t kStack = 256 * 1024;
constexpr int kMaxThreads = 1024;
inline dim3 g_block, g_grid;
inline uint3 g_bid;
inline int g_nthreads = 0;
inline unsigned char g_slot[kMaxThreads][16];
inline void (*g_body)(void**) = nullptr;
inline void** g_args = nullptr;
inline const char* g_error = nullptr;
inline char* g_stacks = nullptr;

// A fiber switch. On x86-64 a few instructions that save the callee-saved registers and the
// floating-point control words (ucontext's swapcontext also makes a signal-mask system call per
// switch: 20x slower on reduction kernels); elsewhere ucontext. Weak: every translation unit has it.
#if defined(__x86_64__)
struct Context { void* sp; };
extern "C" void cucpu_switch(void** save_sp, void* new_sp);
asm(R"(
  .text
  .p2align 4
  .weak cucpu_switch
  .hidden cucpu_switch
  .type cucpu_switch,@function
cucpu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size cucpu_switch, .-cucpu_switch
)");
inline void switch_to(Context& from, Context& to) { cucpu_switch(&from.sp, to.sp); }
// A new fiber's stack: a frame cucpu_switch pops (control words, six registers) returning to `entry`.
inline void make_fiber(Context& c, char* stack, size_t size, void (*entry)()) {
  uintptr_t top = (uintptr_t(stack) + size) & ~uintptr_t(15);
  uint64_t* sp = reinterpret_cast<uint64_t*>(top);
  *--sp = 0;                            // alignment: `entry` starts as if called (rsp % 16 == 8)
  *--sp = uint64_t(uintptr_t(entry));   // return address
  for (int i = 0; i < 6; ++i) *--sp = 0;  // rbp rbx r12 r13 r14 r15
  *--sp = uint64_t(0x1F80) | (uint64_t(0x037F) << 32);  // default mxcsr, x87 control word
  c.sp = sp;
}
#else
struct Context { ucontext_t uc; };
inline void switch_to(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
inline void make_fiber(Context& c, char* stack, size_t size, void (*entry)()) {
  getcontext(&c.uc);
  c.uc.uc_stack.ss_sp = stack;
  c.uc.uc_stack.ss_size = size;
  c.uc.uc_link = nullptr;
  makecontext(&c.uc, entry, 0);
}
#endif

struct Fiber { Context ctx; uint3 tid; int lin; State st; };
inline Fiber* g_fibers = nullptr;
inline Fiber* g_cur = nullptr;
inline Context g_sched;
inline Fiber g_plain;  // the thread being run without a fiber (a kernel without barriers or shuffles)

inline void park(State s) {
  if (g_cur == &g_plain) {  // launched without fibers although the kernel waits: a bug of the caller
    std::fputs("cuda_cpu_shim: a kernel launched without fibers reached a barrier or shuffle\n", stderr);
    std::abort();
  }
  g_cur->st = s;
  switch_to(g_cur->ctx, g_sched);
}
inline void fiber_main() {
  g_body(g_args);
  g_cur->st = DONE;
  switch_to(g_cur->ctx, g_sched);
  std::abort();  // never resumed
}
// The bounds of the section that holds every `__shared__` array of the library (the linker
// defines them; weak: a library without shared memory has no such section).
extern "C" char __start_cucpu_shared[] __attribute__((weak, visibility("hidden")));
extern "C" char __stop_cucpu_shared[] __attribute__((weak, visibility("hidden")));
inline void poison_shared() {
  if (__start_cucpu_shared && __stop_cucpu_shared > __start_cucpu_shared)
    std::memset(__start_cucpu_shared, 0xff, size_t(__stop_cucpu_shared - __start_cucpu_shared));
}
inline uint3 thread_index(int i) {
  return {unsigned(i % g_block.x), unsigned((i / g_block.x) % g_block.y), unsigned(i / (g_block.x * g_block.y))};
}
// Run one block to completion; returns false on deadlock.
inline bool run_block() {
  int n = g_nthreads;
  for (int i = 0; i < n; ++i) {
    Fiber& f = g_fibers[i];
    f.lin = i;
    f.tid = thread_index(i);
    f.st = RUN;
    make_fiber(f.ctx, g_stacks + size_t(i) * kStack, kStack, fiber_main);
  }
  for (;;) {
    bool ran = false;
    for (int i = 0; i < n; ++i) {
      if (g_fibers[i].st != RUN) continue;
      g_cur = &g_fibers[i];
      switch_to(g_sched, g_cur->ctx);
      ran = true;
    }
    if (ran) continue;
    // nobody runnable: release barriers whose participants have all arrived
    int live = 0, at_bar = 0;
    for (int i = 0; i < n; ++i) {
      if (g_fibers[i].st != DONE) ++live;
      if (g_fibers[i].st == BAR) ++at_bar;
    }
    if (live == 0) return true;
    bool released = false;
    for (int w = 0; w < (n + 31) / 32; ++w) {  // warp barriers first
      int lo = w * 32, hi = std::min(n, lo + 32), wl = 0, wb = 0;
      for (int i = lo; i < hi; ++i) {
        if (g_fibers[i].st != DONE) ++wl;
        if (g_fibers[i].st == WARPBAR) ++wb;
      }
      if (wb > 0 && wb == wl) {
        for (int i = lo; i < hi; ++i) if (g_fibers[i].st == WARPBAR) g_fibers[i].st = RUN;
        released = true;
      }
    }
    if (released) continue;
    if (at_bar == live) {
      for (int i = 0; i < n; ++i) if (g_fibers[i].st == BAR) g_fibers[i].st = RUN;
      continue;
    }
    g_error = "deadlock: threads wait at barriers that other threads of the block never reach";
    return false;
  }
}
// Run a kernel. `fibers` false: the kernel has no barrier and no shuffle (the caller checked its
// source), so its threads run one after another, each to completion, with no fiber.
inline int launch(void (*body)(void**), void** args, dim3 grid, dim3 block, bool fibers) {
  int n = int(block.x * block.y * block.z);
  if (n > kMaxThreads) { g_error = "block larger than 1024 threads"; return 1; }
  if (fibers && !g_stacks) {
    g_stacks = (char*)mmap(nullptr, kStack * kMaxThreads, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (g_stacks == MAP_FAILED) { g_stacks = nullptr; g_error = "no memory for the fiber stacks"; return 1; }
    g_fibers = new Fiber[kMaxThreads];
  }
  g_body = body; g_args = args; g_grid = grid; g_block = block; g_nthreads = n; g_error = nullptr;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        g_bid = {x, y, z};
        poison_shared();
        if (fibers) {
          if (!run_block()) return 2;
          continue;
        }
        g_cur = &g_plain;
        for (int i = 0; i < n; ++i) {
          g_plain.lin = i;
          g_plain.tid = thread_index(i);
          g_plain.st = RUN;
          body(args);
        }
      }
  return 0;
}
template <typename T>
inline T shfl_from(T v, int src_sub, int width) {  // src_sub: lane index inside the width-segment, or -1 = own
  static_assert(sizeof(T) <= 16, "shuffle of a type wider than 16 bytes");
  int lin = g_cur->lin;
  std::memcpy(g_slot[lin], &v, sizeof(T));
  park(WARPBAR);
  int lane = lin % 32, sub = lane % width, base = lin - sub;
  T r = v;
  if (src_sub >= 0 && src_sub < width && base + src_sub < g_nthreads) std::memcpy(&r, g_slot[base + src_sub], sizeof(T));
  park(WARPBAR);
  return r;
}
}  // namespace cucpu

#define threadIdx (cucpu::g_cur->tid)
#define blockIdx (cucpu::g_bid)
#define blockDim (cucpu::g_block)
#define gridDim (cucpu::g_grid)
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __shared__ __attribute__((section("cucpu_shared"))) static
#define __align__(n) alignas(n)
inline void __syncthreads() { cucpu::park(cucpu::BAR); }
inline void __syncwarp(unsigned = 0xffffffffu) { cucpu::park(cucpu::WARPBAR); }
inline unsigned __activemask() { return 0xffffffffu; }
inline void __threadfence() {}
inline void __threadfence_block() {}
template <typename T> inline T __shfl_sync(unsigned, T v, int src, int width = 32) {
  return cucpu::shfl_from(v, ((src % width) + width) % width, width);
}
template <typename T> inline T __shfl_down_sync(unsigned, T v, unsigned d, int width = 32) {
  int sub = (cucpu::g_cur->lin % 32) % width;
  return cucpu::shfl_from(v, sub + int(d) < width ? sub + int(d) : -1, width);
}
template <typename T> inline T __shfl_up_sync(unsigned, T v, unsigned d, int width = 32) {
  int sub = (cucpu::g_cur->lin % 32) % width;
  return cucpu::shfl_from(v, sub - int(d) >= 0 ? sub - int(d) : -1, width);
}
template <typename T> inline T __shfl_xor_sync(unsigned, T v, int m, int width = 32) {
  int sub = (cucpu::g_cur->lin % 32) % width;
  return cucpu::shfl_from(v, (sub ^ m) < width ? (sub ^ m) : -1, width);
}
template <typename T> inline T __ldg(const T* p) { return *p; }
template <typename T> inline T atomicAdd(T* p, T v) { T o = *p; *p = o + v; return o; }

// vector types used by TVM's CUDA codegen
#define CUCPU_VEC2(T, N) struct alignas(2 * sizeof(T)) N { T x, y; }; \
  inline N make_##N(T x, T y) { return N{x, y}; }
#define CUCPU_VEC3(T, N) struct N { T x, y, z; }; \
  inline N make_##N(T x, T y, T z) { return N{x, y, z}; }
#define CUCPU_VEC4(T, N) struct alignas(4 * sizeof(T)) N { T x, y, z, w; }; \
  inline N make_##N(T x, T y, T z, T w) { return N{x, y, z, w}; }
CUCPU_VEC2(float, float2) CUCPU_VEC3(float, float3) CUCPU_VEC4(float, float4)
CUCPU_VEC2(int, int2) CUCPU_VEC3(int, int3) CUCPU_VEC4(int, int4)
CUCPU_VEC2(unsigned, uint2) CUCPU_VEC4(unsigned, uint4)
CUCPU_VEC2(signed char, char2) CUCPU_VEC4(signed char, char4)
CUCPU_VEC2(unsigned char, uchar2) CUCPU_VEC4(unsigned char, uchar4)
CUCPU_VEC2(double, double2)
CUCPU_VEC2(long long, longlong2)
struct uint1 { unsigned x; };
inline uint1 make_uint1(unsigned x) { return uint1{x}; }

// math: libm
using std::max;
using std::min;
inline float max(float a, int b) { return std::max(a, float(b)); }
inline float max(int a, float b) { return std::max(float(a), b); }
inline float min(float a, int b) { return std::min(a, float(b)); }
inline float min(int a, float b) { return std::min(float(a), b); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __powf(float a, float b) { return powf(a, b); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanhf(float x) { return tanhf(x); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline int __float2int_rn(float x) { return int(nearbyintf(x)); }
inline int __float_as_int(float x) { int i; std::memcpy(&i, &x, 4); return i; }
inline float __int_as_float(int i) { float x; std::memcpy(&x, &i, 4); return x; }
inline int __dp4a(int a, int b, int c) {
  for (int i = 0; i < 4; ++i) c += int((signed char)(a >> (8 * i))) * int((signed char)(b >> (8 * i)));
  return c;
}
// fp16: _Float16 on the host compiler
typedef _Float16 half;
typedef _Float16 __half;
CUCPU_VEC2(half, half2)
typedef half2 __half2;
inline half __float2half(float x) { return half(x); }
inline half __float2half_rn(float x) { return half(x); }
inline float __half2float(half x) { return float(x); }
inline half hexp(half x) { return half(expf(float(x))); }
inline half hmax(half a, half b) { return a > b ? a : b; }
inline half hmin(half a, half b) { return a < b ? a : b; }
// max(half, half) and min(half, half) come with TVM's own preamble
inline bool __hgt(half a, half b) { return a > b; }
inline bool __hlt(half a, half b) { return a < b; }
inline bool __hge(half a, half b) { return a >= b; }
inline bool __hle(half a, half b) { return a <= b; }
inline half hsqrt(half x) { return half(sqrtf(float(x))); }
inline half hrsqrt(half x) { return half(1.0f / sqrtf(float(x))); }
inline half htanh(half x) { return half(tanhf(float(x))); }
inline half herf(half x) { return half(erff(float(x))); }

// Call a kernel whose parameters are all pointers from an array of void*.
template <typename... A, size_t... I>
inline void cucpu_call_impl(void (*k)(A...), void** a, std::index_sequence<I...>) { k(static_cast<A>(a[I])...); }
template <typename... A>
inline void cucpu_call(void (*k)(A...), void** a) { cucpu_call_impl(k, a, std::index_sequence_for<A...>{}); }
