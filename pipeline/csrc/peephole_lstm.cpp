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
//   * the input projection for all steps (x W_ih^T + bias) is one big GEMM before the loop; the per-step
//     recurrent GEMM accumulates into it in place, and the gate math overwrites it with the activations
//     (i, f, g, o), which are saved for the backward pass together with c and tanh(c);
//   * fast path (float32, oneDNN brgemm usable): the whole time loop runs inside ONE OpenMP parallel
//     region; every thread owns a slice of hidden units, computes h_{t-1} x W_hh^T for its slice (all four
//     gates) with at::native::cpublas::brgemm and then the fused gate math for its slice; one barrier
//     per step. The backward mirrors it: gate math for the slice -> barrier -> dh_{t-1}[:, slice] =
//     dgates_t x W_hh[:, slice];
//   * generic path (float64, or brgemm unavailable): per-step at::addmm / at::mm plus at::parallel_for for
//     the gate math. Same formulas, so results agree to rounding;
//   * weight gradients, dx and dbias are large GEMMs / reductions over the stacked dgates after the loop.
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
template <typename T, bool PEEP>
static inline void fwd_row(int64_t n, T* __restrict gi, T* __restrict gf, T* __restrict gg,
                           T* __restrict go, const T* __restrict cprev, const T* __restrict pi,
                           const T* __restrict pf, const T* __restrict po, T* __restrict c,
                           T* __restrict tc, T* __restrict h) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    const T cp = cprev[j];
    T ai = gi[j], af = gf[j];
    if (PEEP) {
      ai += pi[j] * cp;
      af += pf[j] * cp;
    }
    const T i = Act<T>::sigmoid(ai);
    const T f = Act<T>::sigmoid(af);
    const T g = Act<T>::tanh(gg[j]);
    const T cn = f * cp + i * g;
    T ao = go[j];
    if (PEEP) ao += po[j] * cn;
    const T o = Act<T>::sigmoid(ao);
    const T t = Act<T>::tanh(cn);
    gi[j] = i;
    gf[j] = f;
    gg[j] = g;
    go[j] = o;
    c[j] = cn;
    tc[j] = t;
    h[j] = o * t;
  }
}

// dh_a + dh_b is the total gradient reaching h_t; dc is the carried gradient of c_t (in) and c_{t-1}
// (out). Writes the pre-activation gradients; accumulates the peephole gradients into dp* (double).
template <typename T, bool PEEP>
static inline void bwd_row(int64_t n, const T* __restrict ai_, const T* __restrict af_,
                           const T* __restrict ag_, const T* __restrict ao_, const T* __restrict cprev,
                           const T* __restrict cc, const T* __restrict tc, const T* __restrict dh_a,
                           const T* __restrict dh_b, T* __restrict dc, const T* __restrict pi,
                           const T* __restrict pf, const T* __restrict po, T* __restrict dgi,
                           T* __restrict dgf, T* __restrict dgg, T* __restrict dgo, T* __restrict dpi,
                           T* __restrict dpf, T* __restrict dpo) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    const T i = ai_[j], f = af_[j], g = ag_[j], o = ao_[j];
    const T cp = cprev[j], cn = cc[j], t = tc[j];
    const T dh = dh_a[j] + dh_b[j];
    const T dao = dh * t * o * (T(1) - o);
    T dcn = dc[j] + dh * o * (T(1) - t * t);
    if (PEEP) dcn += dao * po[j];
    const T dai = dcn * g * i * (T(1) - i);
    const T daf = dcn * cp * f * (T(1) - f);
    const T dag = dcn * i * (T(1) - g * g);
    T dcp = dcn * f;
    if (PEEP) {
      dcp += dai * pi[j] + daf * pf[j];
      dpi[j] += dai * cp;
      dpf[j] += daf * cp;
      dpo[j] += dao * cn;
    }
    dc[j] = dcp;
    dgi[j] = dai;
    dgf[j] = daf;
    dgg[j] = dag;
    dgo[j] = dao;
  }
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

// Split H hidden units into `parts` contiguous slices, multiples of 16 where possible.
static inline void slice_of(int64_t H, int parts, int tid, int64_t& j0, int64_t& j1) {
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
// Forward loops. `gates` [S, B, 4H] holds the input projection on entry and the activations on exit.
// ---------------------------------------------------------------------------------------------------
template <typename T, bool PEEP>
static void fwd_slice_rows(int64_t B, int64_t H, int64_t j0, int64_t j1, T* gt, const T* cprev,
                           const T* peep, T* ct, T* tct, T* ht) {
  const int64_t n = j1 - j0;
  if (n <= 0) return;
  const T* pi = PEEP ? peep + j0 : nullptr;
  const T* pf = PEEP ? peep + H + j0 : nullptr;
  const T* po = PEEP ? peep + 2 * H + j0 : nullptr;
  for (int64_t b = 0; b < B; ++b) {
    T* g = gt + b * 4 * H + j0;
    fwd_row<T, PEEP>(n, g, g + H, g + 2 * H, g + 3 * H, cprev + b * H + j0, pi, pf, po,
                     ct + b * H + j0, tct + b * H + j0, ht + b * H + j0);
  }
}

#if PLSTM_HAVE_BRGEMM
// Returns false if any brgemm call threw (results then invalid; caller recomputes generically).
template <bool PEEP>
static bool fwd_loop_brgemm(int64_t S, int64_t B, int64_t H, float* gates, const float* wT /*[H,4H]*/,
                            const float* peep, const float* h0, const float* c0, float* y, float* call,
                            float* tcall) {
  const int nt = num_workers(H);
  std::atomic<bool> failed{false};
#pragma omp parallel num_threads(nt)
  {
    int tid = 0, nth = 1;
#ifdef _OPENMP
    tid = omp_get_thread_num();
    nth = omp_get_num_threads();
#endif
    int64_t j0, j1;
    slice_of(H, nth, tid, j0, j1);
    const int64_t n = j1 - j0;
    bool my_fail = false;
    for (int64_t t = 0; t < S; ++t) {
      const float* hprev = t == 0 ? h0 : y + (t - 1) * B * H;
      const float* cprev = t == 0 ? c0 : call + (t - 1) * B * H;
      float* gt = gates + t * B * 4 * H;
      if (n > 0 && !my_fail) {
        try {
          for (int q = 0; q < 4; ++q) {
            at::native::cpublas::brgemm(B, n, H, /*ld_a=*/H, /*ld_b=*/4 * H, /*ld_c=*/4 * H,
                                        /*add_C=*/true, hprev, wT + q * H + j0, gt + q * H + j0,
                                        /*is_vnni=*/false);
          }
        } catch (...) {
          my_fail = true;
          failed.store(true);
        }
        fwd_slice_rows<float, PEEP>(B, H, j0, j1, gt, cprev, peep, call + t * B * H,
                                    tcall + t * B * H, y + t * B * H);
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
static bool bwd_loop_brgemm(int64_t S, int64_t B, int64_t H, const float* gates, const float* w_hh,
                            const float* peep, const float* c0, const float* call, const float* tcall,
                            const float* dy, float* dh_rec, float* dc, float* dgates, float* dpeep) {
  const int nt = num_workers(H);
  std::atomic<bool> failed{false};
#pragma omp parallel num_threads(nt)
  {
    int tid = 0, nth = 1;
#ifdef _OPENMP
    tid = omp_get_thread_num();
    nth = omp_get_num_threads();
#endif
    int64_t j0, j1;
    slice_of(H, nth, tid, j0, j1);
    const int64_t n = j1 - j0;
    bool my_fail = false;
    const float* pi = PEEP ? peep + j0 : nullptr;
    const float* pf = PEEP ? peep + H + j0 : nullptr;
    const float* po = PEEP ? peep + 2 * H + j0 : nullptr;
    for (int64_t t = S - 1; t >= 0; --t) {
      if (n > 0) {
        const float* gt = gates + t * B * 4 * H;
        float* dgt = dgates + t * B * 4 * H;
        const float* cprev = t == 0 ? c0 : call + (t - 1) * B * H;
        for (int64_t b = 0; b < B; ++b) {
          const float* g = gt + b * 4 * H + j0;
          float* dg = dgt + b * 4 * H + j0;
          const int64_t o = b * H + j0;
          bwd_row<float, PEEP>(n, g, g + H, g + 2 * H, g + 3 * H, cprev + o, call + t * B * H + o,
                               tcall + t * B * H + o, dy + t * B * H + o, dh_rec + o, dc + o, pi, pf, po,
                               dg, dg + H, dg + 2 * H, dg + 3 * H, dpeep + j0, dpeep + H + j0,
                               dpeep + 2 * H + j0);
        }
      }
#pragma omp barrier
      if (n > 0 && !my_fail) {
        try {
          at::native::cpublas::brgemm(B, n, 4 * H, /*ld_a=*/4 * H, /*ld_b=*/H, /*ld_c=*/H,
                                      /*add_C=*/false, dgates + t * B * 4 * H, w_hh + j0, dh_rec + j0,
                                      /*is_vnni=*/false);
        } catch (...) {
          my_fail = true;
          failed.store(true);
        }
      }
      // No barrier needed: the next step's gate math only reads this thread's own slice of dh_rec
      // and writes dgates of another time step.
    }
    try {
      at::native::cpublas::brgemm_release(false);
    } catch (...) {
    }
  }
  return !failed.load();
}
#endif  // PLSTM_HAVE_BRGEMM

template <typename T, bool PEEP>
static void fwd_loop_generic(int64_t S, int64_t B, int64_t H, at::Tensor& gates, const at::Tensor& w_hh,
                             const T* peep, const at::Tensor& h0, const at::Tensor& c0, at::Tensor& y,
                             at::Tensor& call, at::Tensor& tcall) {
  const at::Tensor wT = w_hh.t();
  T* gp = gates.data_ptr<T>();
  T* yp = y.data_ptr<T>();
  T* cp = call.data_ptr<T>();
  T* tp = tcall.data_ptr<T>();
  const T* c0p = c0.data_ptr<T>();
  const int64_t blocks = (H + 15) / 16;
  for (int64_t t = 0; t < S; ++t) {
    at::Tensor gt = gates[t];
    gt.addmm_(t == 0 ? h0 : y[t - 1], wT);
    const T* cprev = t == 0 ? c0p : cp + (t - 1) * B * H;
    at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
      const int64_t j0 = std::min(H, b0 * 16), j1 = std::min(H, b1 * 16);
      fwd_slice_rows<T, PEEP>(B, H, j0, j1, gp + t * B * 4 * H, cprev, peep, cp + t * B * H,
                              tp + t * B * H, yp + t * B * H);
    });
  }
}

template <typename T, bool PEEP>
static void bwd_loop_generic(int64_t S, int64_t B, int64_t H, const T* gates, const at::Tensor& w_hh,
                             const T* peep, const T* c0, const T* call, const T* tcall, const T* dy,
                             at::Tensor& dh_rec, T* dc, at::Tensor& dgates, T* dpeep) {
  const int64_t blocks = (H + 15) / 16;
  T* dgp = dgates.data_ptr<T>();
  for (int64_t t = S - 1; t >= 0; --t) {
    const T* cprev = t == 0 ? c0 : call + (t - 1) * B * H;
    T* dhr = dh_rec.data_ptr<T>();
    at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
      const int64_t j0 = std::min(H, b0 * 16), j1 = std::min(H, b1 * 16);
      const int64_t n = j1 - j0;
      if (n <= 0) return;
      const T* pi = PEEP ? peep + j0 : nullptr;
      const T* pf = PEEP ? peep + H + j0 : nullptr;
      const T* po = PEEP ? peep + 2 * H + j0 : nullptr;
      for (int64_t b = 0; b < B; ++b) {
        const T* g = gates + t * B * 4 * H + b * 4 * H + j0;
        T* dg = dgp + t * B * 4 * H + b * 4 * H + j0;
        const int64_t o = b * H + j0;
        bwd_row<T, PEEP>(n, g, g + H, g + 2 * H, g + 3 * H, cprev + o, call + t * B * H + o,
                         tcall + t * B * H + o, dy + t * B * H + o, dhr + o, dc + o, pi, pf, po, dg,
                         dg + H, dg + 2 * H, dg + 3 * H, dpeep + j0, dpeep + H + j0, dpeep + 2 * H + j0);
      }
    });
    at::mm_out(dh_rec, dgates[t], w_hh);
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

// Returns (y [S,B,H], h_n, c_n, gates (activations i,f,g,o) [S,B,4H], c [S,B,H], tanh(c) [S,B,H]).
std::vector<at::Tensor> lstm_forward(const at::Tensor& x, const at::Tensor& w_ih, const at::Tensor& w_hh,
                                     const c10::optional<at::Tensor>& bias,
                                     const c10::optional<at::Tensor>& peep, const at::Tensor& h0,
                                     const at::Tensor& c0) {
  check_inputs(x, w_ih, w_hh, bias, peep, h0, c0);
  const int64_t S = x.size(0), B = x.size(1), I = x.size(2), H = w_hh.size(1);
  const auto opts = x.options();
  at::Tensor y = at::empty({S, B, H}, opts);
  at::Tensor call = at::empty({S, B, H}, opts);
  at::Tensor tcall = at::empty({S, B, H}, opts);
  at::Tensor gates;
  if (S == 0) {
    gates = at::empty({0, B, 4 * H}, opts);
    return {y, h0.clone(), c0.clone(), gates, call, tcall};
  }
  auto project = [&]() {  // input projection for all steps: x W_ih^T + bias
    at::Tensor x2 = x.view({S * B, I});
    at::Tensor g2 = bias.has_value() ? at::addmm(*bias, x2, w_ih.t()) : at::mm(x2, w_ih.t());
    return g2.view({S, B, 4 * H});
  };
  gates = project();
  const bool has_peep = peep.has_value();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "peephole_lstm_forward", [&] {
    using T = scalar_t;
    const T* pp = has_peep ? peep->data_ptr<T>() : nullptr;
    bool done = false;
#if PLSTM_HAVE_BRGEMM
    if constexpr (std::is_same<T, float>::value) {
      if (brgemm_usable()) {
        at::Tensor wT = w_hh.t().contiguous();
        done = has_peep ? fwd_loop_brgemm<true>(S, B, H, gates.data_ptr<float>(), wT.data_ptr<float>(), pp,
                                                h0.data_ptr<float>(), c0.data_ptr<float>(),
                                                y.data_ptr<float>(), call.data_ptr<float>(),
                                                tcall.data_ptr<float>())
                        : fwd_loop_brgemm<false>(S, B, H, gates.data_ptr<float>(), wT.data_ptr<float>(),
                                                 pp, h0.data_ptr<float>(), c0.data_ptr<float>(),
                                                 y.data_ptr<float>(), call.data_ptr<float>(),
                                                 tcall.data_ptr<float>());
        if (!done) {
          g_brgemm_state.store(0);  // brgemm threw midway (never seen in practice): redo generically
          gates = project();
        }
      }
    }
#endif
    if (!done) {
      if (has_peep)
        fwd_loop_generic<T, true>(S, B, H, gates, w_hh, pp, h0, c0, y, call, tcall);
      else
        fwd_loop_generic<T, false>(S, B, H, gates, w_hh, pp, h0, c0, y, call, tcall);
    }
  });
  return {y, y[S - 1].clone(), call[S - 1].clone(), gates, call, tcall};
}

// Returns (dx, dw_ih, dw_hh, dbias (undefined if !has_bias), dpeep (undefined if no peep), dh0, dc0).
std::vector<at::Tensor> lstm_backward(const at::Tensor& dy_in, const at::Tensor& dh_n, const at::Tensor& dc_n,
                                      const at::Tensor& x, const at::Tensor& w_ih, const at::Tensor& w_hh,
                                      const c10::optional<at::Tensor>& peep, const at::Tensor& h0,
                                      const at::Tensor& c0, const at::Tensor& y, const at::Tensor& gates,
                                      const at::Tensor& call, const at::Tensor& tcall, bool has_bias,
                                      bool need_dx, bool need_dw) {
  const int64_t S = x.size(0), B = x.size(1), I = x.size(2), H = w_hh.size(1);
  const auto opts = x.options();
  at::Tensor dy = dy_in.contiguous();
  at::Tensor dh_rec = dh_n.contiguous().clone();
  at::Tensor dc = dc_n.contiguous().clone();
  const bool has_peep = peep.has_value();
  at::Tensor dpeep = has_peep ? at::zeros({3, H}, opts) : at::Tensor();
  at::Tensor dgates = at::empty({S, B, 4 * H}, opts);
  if (S > 0) {
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "peephole_lstm_backward", [&] {
      using T = scalar_t;
      const T* pp = has_peep ? peep->data_ptr<T>() : nullptr;
      T* dpp = has_peep ? dpeep.data_ptr<T>() : nullptr;
      bool done = false;
#if PLSTM_HAVE_BRGEMM
      if constexpr (std::is_same<T, float>::value) {
        if (brgemm_usable()) {
          at::Tensor dh_save = dh_rec.clone(), dc_save = dc.clone();
          done = has_peep
                     ? bwd_loop_brgemm<true>(S, B, H, gates.data_ptr<float>(), w_hh.data_ptr<float>(), pp,
                                             c0.data_ptr<float>(), call.data_ptr<float>(),
                                             tcall.data_ptr<float>(), dy.data_ptr<float>(),
                                             dh_rec.data_ptr<float>(), dc.data_ptr<float>(),
                                             dgates.data_ptr<float>(), dpp)
                     : bwd_loop_brgemm<false>(S, B, H, gates.data_ptr<float>(), w_hh.data_ptr<float>(), pp,
                                              c0.data_ptr<float>(), call.data_ptr<float>(),
                                              tcall.data_ptr<float>(), dy.data_ptr<float>(),
                                              dh_rec.data_ptr<float>(), dc.data_ptr<float>(),
                                              dgates.data_ptr<float>(), dpp);
          if (!done) {
            g_brgemm_state.store(0);
            dh_rec.copy_(dh_save);
            dc.copy_(dc_save);
            if (has_peep) dpeep.zero_();
          }
        }
      }
#endif
      if (!done) {
        if (has_peep)
          bwd_loop_generic<T, true>(S, B, H, gates.data_ptr<T>(), w_hh, pp, c0.data_ptr<T>(),
                                    call.data_ptr<T>(), tcall.data_ptr<T>(), dy.data_ptr<T>(), dh_rec,
                                    dc.data_ptr<T>(), dgates, dpp);
        else
          bwd_loop_generic<T, false>(S, B, H, gates.data_ptr<T>(), w_hh, pp, c0.data_ptr<T>(),
                                     call.data_ptr<T>(), tcall.data_ptr<T>(), dy.data_ptr<T>(), dh_rec,
                                     dc.data_ptr<T>(), dgates, dpp);
      }
    });
  }
  at::Tensor dg2 = dgates.view({S * B, 4 * H});
  at::Tensor dx, dw_ih, dw_hh, dbias;
  if (need_dx) dx = at::mm(dg2, w_ih).view({S, B, I});
  if (need_dw) {
    dw_ih = at::mm(dg2.t(), x.view({S * B, I}));
    // h_{t-1} for t = 0..S-1: [h0; y_0 .. y_{S-2}]
    dw_hh = at::mm(dgates[0].t(), h0);
    if (S > 1) dw_hh.addmm_(dgates.narrow(0, 1, S - 1).reshape({(S - 1) * B, 4 * H}).t(),
                            y.narrow(0, 0, S - 1).reshape({(S - 1) * B, H}));
    if (has_bias) dbias = dg2.sum(0);
  }
  return {dx, dw_ih, dw_hh, dbias, dpeep, dh_rec, dc};
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
