// Fused CPU training kernel for one (peephole) LSTM layer over time, forward + hand-written backward.
//
// Math (time-major, PyTorch gate order i, f, g, o in the packed weights):
//   gates = x_t W_ih^T + h_{t-1} W_hh^T + bias
//   i = sigmoid(gates_i + p_i * c_{t-1})
//   f = sigmoid(gates_f + p_f * c_{t-1})
//   g = tanh(gates_g)
//   c = f * c_{t-1} + i * g
//   o = sigmoid(gates_o + p_o * c)          (the output gate peeks at the NEW cell)
//   h = o * tanh(c)
// peep is [3, H] = (p_i, p_f, p_o) or None (plain LSTM).
//
// Layout of the work:
//   * the input projection for all steps (x W_ih^T + bias) is one big GEMM before the loop, transposed to
//     "unit-major" [4H, S, B] (row = gate unit, columns = (t, b)); the per-step recurrent GEMM accumulates into it in place and the gate math
//     overwrites it with the activations (i, f, g, o), which are saved for the backward pass together with
//     c and tanh(c) (also unit-major, [S+1, H, B] / [S, H, B]);
//   * the recurrent GEMMs are computed transposed, W_hh[rows] x h^T, so the weights are the M dimension:
//     with a batch of 32 that runs ~3x faster in oneDNN's brgemm than h x W^T (N = 32 fits its register
//     blocking, the weights stream through once per step);
//   * fast path (float32, oneDNN brgemm usable): the whole time loop runs inside ONE OpenMP parallel
//     region; every thread owns a slice of hidden units, computes its rows of the four gates with
//     at::native::cpublas::brgemm and then the fused gate math for its units; one barrier per step. The
//     backward mirrors it: gate math for the slice -> barrier -> dh_{t-1}[slice] = W_hh^T[slice] x dgates_t;
//   * generic path (float64, or brgemm unavailable): the same layout with per-step at::addmm / at::mm and
//     at::parallel_for for the gate math. Same formulas, so results agree to rounding;
//   * dbias is summed inside the backward gate math; dx and the weight gradients are large GEMMs over the
//     stacked dgates after the loop, stored [4H, S, B] so that [4H, S*B] feeds them with no transpose copy;
//     in float32 they (and the forward's input projection) run as 64x64-tiled oneDNN brgemm calls.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <ATen/native/CPUBlas.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

// ---------------------------------------------------------------------------------------------------
// Activations. float: branch-free, auto-vectorisable exp (Cephes-style, ~1 ulp), so the gate math
// vectorises under `omp simd`. double: libm (exactness for gradcheck matters more than speed there).
// ---------------------------------------------------------------------------------------------------
static inline float exp_f(float x) {
  x = std::min(std::max(x, -87.3f), 88.3f);
  // round(x / ln2) with the 1.5 * 2^23 trick (valid in round-to-nearest, no fast-math).
  const float magic = 12582912.0f;
  float n = (x * 1.44269504088896341f + magic) - magic;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float r2 = r * r;
  float p = 1.9875691500E-4f;
  p = p * r + 1.3981999507E-3f;
  p = p * r + 8.3334519073E-3f;
  p = p * r + 4.1665795894E-2f;
  p = p * r + 1.6666665459E-1f;
  p = p * r + 5.0000001201E-1f;
  p = p * r2 + r + 1.0f;
  int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

template <typename T> struct Act;

template <> struct Act<float> {
  static inline float sigmoid(float x) { return 1.0f / (1.0f + exp_f(-x)); }
  static inline float tanh(float x) {
    float ax = std::fabs(x);
    float e = exp_f(-2.0f * ax);
    float t = (1.0f - e) / (1.0f + e);
    return std::copysign(t, x);
  }
};

template <> struct Act<double> {
  static inline double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
  static inline double tanh(double x) { return std::tanh(x); }
};

// ---------------------------------------------------------------------------------------------------
// Cell math on one row (one batch item) for hidden units [0, n) of the pointers given.
// ---------------------------------------------------------------------------------------------------
// Cell math for ONE hidden unit over the batch (unit-major layout: the B values of a unit are contiguous,
// which is what the per-step GEMMs produce; see the layout note in lstm_forward).
// ---------------------------------------------------------------------------------------------------
template <typename T, bool PEEP>
static inline void fwd_unit(int64_t nb, T* __restrict gi, T* __restrict gf, T* __restrict gg,
                            T* __restrict go, const T* __restrict cprev, T pi, T pf, T po, T* __restrict c,
                            T* __restrict tc, T* __restrict h) {
#pragma omp simd
  for (int64_t b = 0; b < nb; ++b) {
    const T cp = cprev[b];
    T ai = gi[b], af = gf[b];
    if (PEEP) {
      ai += pi * cp;
      af += pf * cp;
    }
    const T i = Act<T>::sigmoid(ai);
    const T f = Act<T>::sigmoid(af);
    const T g = Act<T>::tanh(gg[b]);
    const T cn = f * cp + i * g;
    T ao = go[b];
    if (PEEP) ao += po * cn;
    const T o = Act<T>::sigmoid(ao);
    const T t = Act<T>::tanh(cn);
    gi[b] = i;
    gf[b] = f;
    gg[b] = g;
    go[b] = o;
    c[b] = cn;
    tc[b] = t;
    h[b] = o * t;
  }
}

// dh_a + dh_b is the total gradient reaching h_t; dc is the carried gradient of c_t (in) and c_{t-1}
// (out). Writes the pre-activation gradients; accumulates the peephole gradients into sp*.
template <typename T, bool PEEP>
static inline void bwd_unit(int64_t nb, const T* __restrict ai_, const T* __restrict af_,
                            const T* __restrict ag_, const T* __restrict ao_, const T* __restrict cprev,
                            const T* __restrict cc, const T* __restrict tc, const T* __restrict dh_a,
                            const T* __restrict dh_b, T* __restrict dc, T pi, T pf, T po, T* __restrict dgi,
                            T* __restrict dgf, T* __restrict dgg, T* __restrict dgo, T& spi, T& spf, T& spo,
                            T* __restrict sb) {
  T si = 0, sf = 0, so = 0, bi = 0, bf = 0, bg = 0, bo = 0;
#pragma omp simd reduction(+ : si, sf, so, bi, bf, bg, bo)
  for (int64_t b = 0; b < nb; ++b) {
    const T i = ai_[b], f = af_[b], g = ag_[b], o = ao_[b];
    const T cp = cprev[b], cn = cc[b], t = tc[b];
    const T dh = dh_a[b] + dh_b[b];
    const T dao = dh * t * o * (T(1) - o);
    T dcn = dc[b] + dh * o * (T(1) - t * t);
    if (PEEP) dcn += dao * po;
    const T dai = dcn * g * i * (T(1) - i);
    const T daf = dcn * cp * f * (T(1) - f);
    const T dag = dcn * i * (T(1) - g * g);
    T dcp = dcn * f;
    if (PEEP) {
      dcp += dai * pi + daf * pf;
      si += dai * cp;
      sf += daf * cp;
      so += dao * cn;
    }
    dc[b] = dcp;
    bi += dai;
    bf += daf;
    bg += dag;
    bo += dao;
    dgi[b] = dai;
    dgf[b] = daf;
    dgg[b] = dag;
    dgo[b] = dao;
  }
  if (PEEP) {
    spi += si;
    spf += sf;
    spo += so;
  }
  sb[0] += bi;  // the bias gradient (sum of dgates over batch and time) rides along
  sb[1] += bf;
  sb[2] += bg;
  sb[3] += bo;
}
// ---------------------------------------------------------------------------------------------------
// brgemm availability (float32 only). Probed once on a small problem against a naive reference.
// ---------------------------------------------------------------------------------------------------
#if defined(CPUBLAS_BRGEMM_F32F32F32)
#define PLSTM_HAVE_BRGEMM 1
#else
#define PLSTM_HAVE_BRGEMM 0
#endif

static std::atomic<int> g_brgemm_state{-1};  // -1 unknown, 0 unusable, 1 usable
static std::atomic<int> g_force_generic{0};

static bool brgemm_usable() {
#if PLSTM_HAVE_BRGEMM
  if (g_force_generic.load()) return false;
  int s = g_brgemm_state.load();
  if (s >= 0) return s == 1;
  bool ok = false;
  try {
    const int64_t M = 5, N = 24, K = 19, lda = 21, ldb = 29, ldc = 31;
    std::vector<float> A(M * lda), B(K * ldb), C(M * ldc, 0.5f), R(M * ldc, 0.5f);
    for (size_t k = 0; k < A.size(); ++k) A[k] = float((k * 37) % 17) / 16.0f - 0.5f;
    for (size_t k = 0; k < B.size(); ++k) B[k] = float((k * 11) % 13) / 12.0f - 0.5f;
    for (int64_t m = 0; m < M; ++m)
      for (int64_t nn = 0; nn < N; ++nn) {
        double acc = R[m * ldc + nn];
        for (int64_t k = 0; k < K; ++k) acc += double(A[m * lda + k]) * double(B[k * ldb + nn]);
        R[m * ldc + nn] = float(acc);
      }
    at::native::cpublas::brgemm(M, N, K, lda, ldb, ldc, /*add_C=*/true, A.data(), B.data(), C.data(),
                                /*is_vnni=*/false);
    at::native::cpublas::brgemm_release(false);
    ok = true;
    for (int64_t m = 0; m < M && ok; ++m) {
      for (int64_t nn = 0; nn < ldc; ++nn) {
        float want = R[m * ldc + nn];
        if (std::fabs(C[m * ldc + nn] - want) > 1e-5f * (1.0f + std::fabs(want))) {
          ok = false;
          break;
        }
      }
    }
  } catch (...) {
    ok = false;
  }
  g_brgemm_state.store(ok ? 1 : 0);
  return ok;
#else
  return false;
#endif
}

// The calling OpenMP thread's slice [j0, j1) of the H hidden units: the units are split into one contiguous
// slice per thread, multiples of 16 where possible.
static inline void my_slice(int64_t H, int64_t& j0, int64_t& j1) {
  int tid = 0, parts = 1;
#ifdef _OPENMP
  tid = omp_get_thread_num();
  parts = omp_get_num_threads();
#endif
  const int64_t unit = 16;
  const int64_t blocks = (H + unit - 1) / unit;
  const int64_t b0 = blocks * tid / parts, b1 = blocks * (tid + 1) / parts;
  j0 = std::min(H, b0 * unit);
  j1 = std::min(H, b1 * unit);
}

static inline int num_workers(int64_t H) {
  int nt = at::get_num_threads();
#ifdef _OPENMP
  if (omp_in_parallel()) nt = 1;
#endif
  const int64_t blocks = (H + 15) / 16;
  if (nt > blocks) nt = static_cast<int>(blocks);
  return std::max(nt, 1);
}

// ---------------------------------------------------------------------------------------------------
// Layout (all contiguous; "unit-major" per time step so the recurrent GEMMs are W x h^T with the
// weights as the M dimension, which runs ~3x faster than h x W^T for a batch of 32):
//   gS  [4H, S, B]   input projection + bias on entry; activations i, f, g, o on exit
//   hS  [S+1, H, B]  h0^T, h_1^T, ..., h_S^T
//   cS  [S+1, H, B]  c0^T, c_1^T, ..., c_S^T
//   tcS [S, H, B]    tanh(c_t)^T
// ---------------------------------------------------------------------------------------------------
template <typename T, bool PEEP>
static inline void fwd_units(int64_t t, int64_t S, int64_t B, int64_t H, int64_t j0, int64_t j1, T* gS,
                             const T* peep, T* hS, T* cS, T* tcS) {
  T* gt = gS + t * B;
  const int64_t ld = S * B;  // gS is [4H, S, B]: one row of a gate unit holds all steps
  for (int64_t j = j0; j < j1; ++j) {
    const T pi = PEEP ? peep[j] : T(0), pf = PEEP ? peep[H + j] : T(0), po = PEEP ? peep[2 * H + j] : T(0);
    fwd_unit<T, PEEP>(B, gt + j * ld, gt + (H + j) * ld, gt + (2 * H + j) * ld, gt + (3 * H + j) * ld,
                      cS + t * H * B + j * B, pi, pf, po, cS + (t + 1) * H * B + j * B, tcS + t * H * B + j * B,
                      hS + (t + 1) * H * B + j * B);
  }
}

// dyS [S, H, B]; dhr, dc [H, B] (recurrent dh and carried dc, unit-major); dgS [4H, S, B].
template <typename T, bool PEEP>
static inline void bwd_units(int64_t t, int64_t S, int64_t B, int64_t H, int64_t j0, int64_t j1, const T* gS,
                             const T* peep, const T* cS, const T* tcS, const T* dyS, const T* dhr, T* dc,
                             T* dgS, T* dpeep, T* dbias /*[4H] accumulated*/) {
  const T* gt = gS + t * B;
  T* dgt = dgS + t * B;
  const int64_t ld = S * B;  // gS, dgS are [4H, S, B]
  for (int64_t j = j0; j < j1; ++j) {
    const T pi = PEEP ? peep[j] : T(0), pf = PEEP ? peep[H + j] : T(0), po = PEEP ? peep[2 * H + j] : T(0);
    T spi = 0, spf = 0, spo = 0, sb[4] = {0, 0, 0, 0};
    bwd_unit<T, PEEP>(B, gt + j * ld, gt + (H + j) * ld, gt + (2 * H + j) * ld, gt + (3 * H + j) * ld,
                      cS + t * H * B + j * B, cS + (t + 1) * H * B + j * B, tcS + t * H * B + j * B,
                      dyS + t * H * B + j * B, dhr + j * B, dc + j * B, pi, pf, po, dgt + j * ld,
                      dgt + (H + j) * ld, dgt + (2 * H + j) * ld, dgt + (3 * H + j) * ld, spi, spf, spo, sb);
    for (int q = 0; q < 4; ++q) dbias[q * H + j] += sb[q];
    if (PEEP) {
      dpeep[j] += spi;
      dpeep[H + j] += spf;
      dpeep[2 * H + j] += spo;
    }
  }
}

#if PLSTM_HAVE_BRGEMM
// One OpenMP region for the whole sequence; each thread owns a slice of hidden units. Returns false if
// any brgemm call threw (results then invalid; the caller recomputes generically).
template <bool PEEP>
static bool fwd_loop_brgemm(int64_t S, int64_t B, int64_t H, float* gS, const float* w_hh, const float* peep,
                            float* hS, float* cS, float* tcS) {
  const int nt = num_workers(H);
  std::atomic<bool> failed{false};
#pragma omp parallel num_threads(nt)
  {
    int64_t j0, j1;
    my_slice(H, j0, j1);
    const int64_t n = j1 - j0;
    bool my_fail = false;
    for (int64_t t = 0; t < S; ++t) {
      if (n > 0 && !my_fail) {
        try {
          // gates_q[j0:j1, :] += W_hh[q*H+j0 : q*H+j1, :] x h_{t-1}^T      ([n,H] x [H,B])
          for (int q = 0; q < 4; ++q)
            at::native::cpublas::brgemm(n, B, H, /*ld_a=*/H, /*ld_b=*/B, /*ld_c=*/S * B, /*add_C=*/true,
                                        w_hh + (q * H + j0) * H, hS + t * H * B,
                                        gS + (q * H + j0) * S * B + t * B, /*is_vnni=*/false);
        } catch (...) {
          my_fail = true;
          failed.store(true);
        }
        fwd_units<float, PEEP>(t, S, B, H, j0, j1, gS, peep, hS, cS, tcS);
      }
#pragma omp barrier
    }
    try {
      at::native::cpublas::brgemm_release(false);
    } catch (...) {
    }
  }
  return !failed.load();
}

template <bool PEEP>
static bool bwd_loop_brgemm(int64_t S, int64_t B, int64_t H, const float* gS, const float* w_hhT /*[H,4H]*/,
                            const float* peep, const float* cS, const float* tcS, const float* dyS, float* dhr,
                            float* dc, float* dgS, float* dpeep, float* dbias) {
  const int nt = num_workers(H);
  std::atomic<bool> failed{false};
#pragma omp parallel num_threads(nt)
  {
    int64_t j0, j1;
    my_slice(H, j0, j1);
    const int64_t n = j1 - j0;
    bool my_fail = false;
    for (int64_t t = S - 1; t >= 0; --t) {
      if (n > 0) bwd_units<float, PEEP>(t, S, B, H, j0, j1, gS, peep, cS, tcS, dyS, dhr, dc, dgS, dpeep, dbias);
#pragma omp barrier
      if (n > 0 && !my_fail) {
        try {
          // dh_{t-1}[j0:j1, :] = W_hh^T[j0:j1, :] x dgates_t      ([n,4H] x [4H,B])
          at::native::cpublas::brgemm(n, B, 4 * H, /*ld_a=*/4 * H, /*ld_b=*/S * B, /*ld_c=*/B, /*add_C=*/false,
                                      w_hhT + j0 * 4 * H, dgS + t * B, dhr + j0 * B,
                                      /*is_vnni=*/false);
        } catch (...) {
          my_fail = true;
          failed.store(true);
        }
      }
      // No barrier needed here: the next step's gate math reads only this thread's rows of dhr and
      // writes dgates of another time step.
    }
    try {
      at::native::cpublas::brgemm_release(false);
    } catch (...) {
    }
  }
  return !failed.load();
}

// C[M,N] (+)= A[M,K] x B[K,N] (row-major, leading dims given) for the big once-per-sequence GEMMs,
// tiled into 64x64 blocks of C over at::parallel_for, K in blocks of 512, each block one brgemm call.
// oneDNN's JIT picks the ISA at run time on any x86 vendor; with batch 32 this beats the library GEMM the
// at::mm path dispatches to on some CPUs. bias (length M) initialises C when given. Returns false on a throw.
static bool gemm_tiled(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* Bm,
                       int64_t ldb, float* C, int64_t ldc, bool add_C, const float* bias = nullptr) {
  const int64_t mb = 64, nb = 64, kb = 512;
  const int64_t tm = (M + mb - 1) / mb, tn = (N + nb - 1) / nb;
  std::atomic<bool> failed{false};
  at::parallel_for(0, tm * tn, 1, [&](int64_t r0, int64_t r1) {
    try {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t m0 = (r / tn) * mb, n0 = (r % tn) * nb;
        const int64_t m = std::min(mb, M - m0), n = std::min(nb, N - n0);
        float* c = C + m0 * ldc + n0;
        bool acc = add_C;
        if (bias != nullptr) {
          for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, bias[m0 + i]);
          acc = true;
        }
        if (K == 0 && !acc)
          for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
        for (int64_t k0 = 0; k0 < K; k0 += kb) {
          const int64_t k = std::min(kb, K - k0);
          at::native::cpublas::brgemm(m, n, k, lda, ldb, ldc, acc, A + m0 * lda + k0, Bm + k0 * ldb + n0, c,
                                      /*is_vnni=*/false);
          acc = true;
        }
      }
      at::native::cpublas::brgemm_release(false);
    } catch (...) {
      failed.store(true);
    }
  });
  return !failed.load();
}
#endif  // PLSTM_HAVE_BRGEMM

template <typename T, bool PEEP>
static void fwd_loop_generic(int64_t S, int64_t B, int64_t H, at::Tensor& gS, const at::Tensor& w_hh,
                             const T* peep, at::Tensor& hS, at::Tensor& cS, at::Tensor& tcS) {
  T* gp = gS.data_ptr<T>();
  T* hp = hS.data_ptr<T>();
  T* cp = cS.data_ptr<T>();
  T* tp = tcS.data_ptr<T>();
  const int64_t blocks = (H + 15) / 16;
  for (int64_t t = 0; t < S; ++t) {
    at::Tensor g_t = gS.select(1, t);  // [4H, B], row stride S*B
    g_t.addmm_(w_hh, hS[t]);
    at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
      fwd_units<T, PEEP>(t, S, B, H, std::min(H, b0 * 16), std::min(H, b1 * 16), gp, peep, hp, cp, tp);
    });
  }
}

template <typename T, bool PEEP>
static void bwd_loop_generic(int64_t S, int64_t B, int64_t H, const T* gS, const at::Tensor& w_hh,
                             const T* peep, const T* cS, const T* tcS, const T* dyS, at::Tensor& dhr, T* dc,
                             at::Tensor& dgS, T* dpeep, T* dbias) {
  const int64_t blocks = (H + 15) / 16;
  T* dgp = dgS.data_ptr<T>();
  const at::Tensor w_hhT = w_hh.t();
  for (int64_t t = S - 1; t >= 0; --t) {
    T* dhp = dhr.data_ptr<T>();
    at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
      bwd_units<T, PEEP>(t, S, B, H, std::min(H, b0 * 16), std::min(H, b1 * 16), gS, peep, cS, tcS, dyS, dhp, dc,
                         dgp, dpeep, dbias);
    });
    at::mm_out(dhr, w_hhT, dgS.select(1, t));
  }
}

static void check_inputs(const at::Tensor& x, const at::Tensor& w_ih, const at::Tensor& w_hh,
                         const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& peep,
                         const at::Tensor& h0, const at::Tensor& c0) {
  TORCH_CHECK(x.dim() == 3, "x must be [S, B, I]");
  const int64_t B = x.size(1), I = x.size(2), H = w_hh.size(1);
  TORCH_CHECK(x.device().is_cpu(), "fused_lstm_layer: CPU tensors only");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "fused_lstm_layer: float32 or float64 only");
  auto same = [&](const at::Tensor& t, const char* name) {
    TORCH_CHECK(t.scalar_type() == x.scalar_type(), name, " dtype must match x");
    TORCH_CHECK(t.device().is_cpu(), name, " must be on the CPU");
    TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
  };
  same(x, "x");
  same(w_ih, "w_ih");
  same(w_hh, "w_hh");
  same(h0, "h0");
  same(c0, "c0");
  TORCH_CHECK(w_ih.dim() == 2 && w_ih.size(0) == 4 * H && w_ih.size(1) == I, "w_ih must be [4H, I]");
  TORCH_CHECK(w_hh.dim() == 2 && w_hh.size(0) == 4 * H, "w_hh must be [4H, H]");
  TORCH_CHECK(h0.dim() == 2 && h0.size(0) == B && h0.size(1) == H, "h0 must be [B, H]");
  TORCH_CHECK(c0.dim() == 2 && c0.size(0) == B && c0.size(1) == H, "c0 must be [B, H]");
  if (bias.has_value()) {
    same(*bias, "bias");
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == 4 * H, "bias must be [4H]");
  }
  if (peep.has_value()) {
    same(*peep, "peep");
    TORCH_CHECK(peep->dim() == 2 && peep->size(0) == 3 && peep->size(1) == H, "peep must be [3, H]");
  }
}

// Returns (y [S,B,H], h_n, c_n, gS [4H,S,B] activations, hS [S+1,H,B], cS [S+1,H,B], tcS [S,H,B]).
std::vector<at::Tensor> lstm_forward(const at::Tensor& x, const at::Tensor& w_ih, const at::Tensor& w_hh,
                                     const c10::optional<at::Tensor>& bias,
                                     const c10::optional<at::Tensor>& peep, const at::Tensor& h0,
                                     const at::Tensor& c0) {
  check_inputs(x, w_ih, w_hh, bias, peep, h0, c0);
  const int64_t S = x.size(0), B = x.size(1), I = x.size(2), H = w_hh.size(1);
  const auto opts = x.options();
  at::Tensor hS = at::empty({S + 1, H, B}, opts);
  at::Tensor cS = at::empty({S + 1, H, B}, opts);
  at::Tensor tcS = at::empty({S, H, B}, opts);
  hS[0].copy_(h0.t());
  cS[0].copy_(c0.t());
  // Input projection for all steps as ONE GEMM written straight into the [4H, S, B] layout:
  // gS viewed [4H, S*B] = W_ih x x^T + bias (no transpose copy).
  const bool fast = x.scalar_type() == at::kFloat && B > 0 && H > 0 && brgemm_usable();
  auto project = [&]() {
    at::Tensor g = at::empty({4 * H, S, B}, opts);
    at::Tensor g2 = g.view({4 * H, S * B});
    at::Tensor xT = x.view({S * B, I}).t();
#if PLSTM_HAVE_BRGEMM
    if (fast && S > 0) {
      at::Tensor xTc = xT.contiguous();
      if (gemm_tiled(4 * H, S * B, I, w_ih.data_ptr<float>(), I, xTc.data_ptr<float>(), S * B,
                     g.data_ptr<float>(), S * B, false, bias.has_value() ? bias->data_ptr<float>() : nullptr))
        return g;
    }
#endif
    if (bias.has_value())
      at::addmm_out(g2, bias->view({4 * H, 1}), w_ih, xT);
    else
      at::mm_out(g2, w_ih, xT);
    return g;
  };
  at::Tensor gS = project();
  const bool has_peep = peep.has_value();
  bool done = S == 0;
#if PLSTM_HAVE_BRGEMM
  if (!done && fast) {
    const float* pp = has_peep ? peep->data_ptr<float>() : nullptr;
    auto fn = has_peep ? &fwd_loop_brgemm<true> : &fwd_loop_brgemm<false>;
    done = fn(S, B, H, gS.data_ptr<float>(), w_hh.data_ptr<float>(), pp, hS.data_ptr<float>(),
              cS.data_ptr<float>(), tcS.data_ptr<float>());
    if (!done) {
      g_brgemm_state.store(0);  // brgemm threw midway (never seen in practice): redo generically
      gS = project();
    }
  }
#endif
  if (!done) {
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "peephole_lstm_forward", [&] {
      using T = scalar_t;
      const T* pp = has_peep ? peep->data_ptr<T>() : nullptr;
      if (has_peep)
        fwd_loop_generic<T, true>(S, B, H, gS, w_hh, pp, hS, cS, tcS);
      else
        fwd_loop_generic<T, false>(S, B, H, gS, w_hh, pp, hS, cS, tcS);
    });
  }
  at::Tensor y = hS.narrow(0, 1, S).transpose(1, 2).contiguous();
  return {y, hS[S].t().contiguous(), cS[S].t().contiguous(), gS, hS, cS, tcS};
}

// Returns (dx, dw_ih, dw_hh, dbias (undefined if !has_bias), dpeep (undefined if no peep), dh0, dc0).
std::vector<at::Tensor> lstm_backward(const at::Tensor& dy, const at::Tensor& dh_n, const at::Tensor& dc_n,
                                      const at::Tensor& x, const at::Tensor& w_ih, const at::Tensor& w_hh,
                                      const c10::optional<at::Tensor>& peep, const at::Tensor& h0,
                                      const at::Tensor& y, const at::Tensor& gS, const at::Tensor& cS,
                                      const at::Tensor& tcS, bool has_bias, bool need_dx, bool need_dw) {
  const int64_t S = x.size(0), B = x.size(1), I = x.size(2), H = w_hh.size(1);
  const auto opts = x.options();
  at::Tensor dyS = dy.transpose(1, 2).contiguous();  // [S, H, B]
  // Private copies: the loop overwrites them, and .t().contiguous() would alias dh_n / dc_n when B or H is 1.
  at::Tensor dhr = at::empty({H, B}, opts).copy_(dh_n.t());  // [H, B]
  at::Tensor dc = at::empty({H, B}, opts).copy_(dc_n.t());   // [H, B]
  const bool has_peep = peep.has_value();
  at::Tensor dpeep = has_peep ? at::zeros({3, H}, opts) : at::Tensor();
  at::Tensor dgS = at::empty({4 * H, S, B}, opts);
  at::Tensor dbias_acc = at::zeros({4 * H}, opts);  // filled by the gate-math loop
  if (S > 0) {
    bool done = false;
#if PLSTM_HAVE_BRGEMM
    if (x.scalar_type() == at::kFloat && B > 0 && H > 0 && brgemm_usable()) {
      at::Tensor dh_save = dhr.clone(), dc_save = dc.clone();
      at::Tensor w_hhT = w_hh.t().contiguous();
      const float* pp = has_peep ? peep->data_ptr<float>() : nullptr;
      float* dpp = has_peep ? dpeep.data_ptr<float>() : nullptr;
      auto fn = has_peep ? &bwd_loop_brgemm<true> : &bwd_loop_brgemm<false>;
      done = fn(S, B, H, gS.data_ptr<float>(), w_hhT.data_ptr<float>(), pp, cS.data_ptr<float>(),
                tcS.data_ptr<float>(), dyS.data_ptr<float>(), dhr.data_ptr<float>(), dc.data_ptr<float>(),
                dgS.data_ptr<float>(), dpp, dbias_acc.data_ptr<float>());
      if (!done) {
        g_brgemm_state.store(0);
        dhr.copy_(dh_save);
        dc.copy_(dc_save);
        if (has_peep) dpeep.zero_();
        dbias_acc.zero_();
      }
    }
#endif
    if (!done) {
      AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "peephole_lstm_backward", [&] {
        using T = scalar_t;
        const T* pp = has_peep ? peep->data_ptr<T>() : nullptr;
        T* dpp = has_peep ? dpeep.data_ptr<T>() : nullptr;
        if (has_peep)
          bwd_loop_generic<T, true>(S, B, H, gS.data_ptr<T>(), w_hh, pp, cS.data_ptr<T>(), tcS.data_ptr<T>(),
                                    dyS.data_ptr<T>(), dhr, dc.data_ptr<T>(), dgS, dpp,
                                    dbias_acc.data_ptr<T>());
        else
          bwd_loop_generic<T, false>(S, B, H, gS.data_ptr<T>(), w_hh, pp, cS.data_ptr<T>(), tcS.data_ptr<T>(),
                                     dyS.data_ptr<T>(), dhr, dc.data_ptr<T>(), dgS, dpp,
                                    dbias_acc.data_ptr<T>());
      });
    }
  }
  at::Tensor dx, dw_ih, dw_hh, dbias;
  if (S == 0) {
    if (need_dx) dx = at::zeros({0, B, I}, opts);
    if (need_dw) {
      dw_ih = at::zeros_like(w_ih);
      dw_hh = at::zeros_like(w_hh);
      if (has_bias) dbias = at::zeros({4 * H}, opts);
    }
  } else if (need_dx || need_dw) {
    at::Tensor dG = dgS.view({4 * H, S * B});  // columns ordered (t, b): big GEMMs need no transpose copy
    bool big_done = false;
#if PLSTM_HAVE_BRGEMM
    if (x.scalar_type() == at::kFloat && B > 0 && H > 0 && brgemm_usable()) {
      const float* g = dgS.data_ptr<float>();
      const at::Tensor xc = x.contiguous(), h0c = h0.contiguous(), yc = y.contiguous();
      bool ok = true;
      if (need_dx) {  // dx^T [I, S*B] = W_ih^T [I, 4H] x dG [4H, S*B]
        at::Tensor w_ihT = w_ih.t().contiguous();
        at::Tensor dxT = at::empty({I, S * B}, opts);
        ok = ok && gemm_tiled(I, S * B, 4 * H, w_ihT.data_ptr<float>(), 4 * H, g, S * B, dxT.data_ptr<float>(),
                              S * B, false);
        dx = dxT.t().contiguous().view({S, B, I});
      }
      if (need_dw && ok) {
        dw_ih = at::empty_like(w_ih);
        dw_hh = at::empty_like(w_hh);
        ok = ok && gemm_tiled(4 * H, I, S * B, g, S * B, xc.data_ptr<float>(), I, dw_ih.data_ptr<float>(), I, false);
        // h_{t-1} for t = 0..S-1 is [h0; y_0 .. y_{S-2}]: two K ranges
        ok = ok && gemm_tiled(4 * H, H, B, g, S * B, h0c.data_ptr<float>(), H, dw_hh.data_ptr<float>(), H, false);
        if (S > 1)
          ok = ok && gemm_tiled(4 * H, H, (S - 1) * B, g + B, S * B, yc.data_ptr<float>(), H,
                                dw_hh.data_ptr<float>(), H, true);
        if (has_bias) dbias = dbias_acc;
      }
      big_done = ok;
      if (!ok) g_brgemm_state.store(0);
    }
#endif
    if (!big_done && need_dx) dx = at::mm(dG.t(), w_ih).view({S, B, I});
    if (!big_done && need_dw) {
      dw_ih = at::mm(dG, x.view({S * B, I}));
      // h_{t-1} for t = 0..S-1 is [h0; y_0 .. y_{S-2}]
      dw_hh = at::mm(dG.narrow(1, 0, B), h0);
      if (S > 1) dw_hh.addmm_(dG.narrow(1, B, (S - 1) * B), y.narrow(0, 0, S - 1).reshape({(S - 1) * B, H}));
      if (has_bias) dbias = dbias_acc;
    }
  }
  return {dx, dw_ih, dw_hh, dbias, dpeep, dhr.t().contiguous(), dc.t().contiguous()};
}

bool brgemm_active() { return brgemm_usable(); }
void set_force_generic(bool v) { g_force_generic.store(v ? 1 : 0); }

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &lstm_forward, "fused peephole LSTM layer forward");
  m.def("backward", &lstm_backward, "fused peephole LSTM layer backward");
  m.def("brgemm_active", &brgemm_active, "whether the oneDNN brgemm fast path is used for float32");
  m.def("set_force_generic", &set_force_generic, "force the generic (at::mm) path, for testing");
}
