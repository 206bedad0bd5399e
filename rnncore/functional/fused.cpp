// Fused pointwise steps of the "bptt" engine's loops: LSTM and GRU, and the RNN's backward
// step (rnncore/functional/fused.py builds and calls this; forward.py and backward.py hold the
// equations and the eager ops that compute the same). Each function does one time step's
// pointwise work for its bs rows in a single pass: the per-step GEMMs stay in torch
// (stepgemm.py), this replaces the 2-8 ATen launches between them, each too small at
// B*H ~ 16k elements to be worth a thread of its own.
//
// Every tensor argument is a 2-D row block whose rows may be strided (a column slice of a
// wider buffer) but whose columns are contiguous. The state of the previous step is read
// row by row: rows [0, k) from `prev` (the previous step's rows of a flat buffer), rows
// [k, bs) from the initial state `init`, so packed batches need no concatenation.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace {

// float32: branch-free exp/tanh the compiler vectorises (the libm calls would not be, and the
// transcendentals are most of a step's pointwise time). Cephes' expf/tanhf polynomials, within
// 2 ulp. float64 keeps libm: it is for checking, not speed.
inline float exp_(float x) {
  x = std::min(std::max(x, -87.3f), 88.3f);                 // 2^n stays a normal float
  const float n = std::floor(x * 1.44269504088896341f + 0.5f);
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;  // x - n ln2, in two parts
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return e * scale;
}
inline double exp_(double x) { return std::exp(x); }

template <typename T> inline T sigmoid_(T x) { return T(1) / (T(1) + exp_(-x)); }

inline float tanh_(float x) {
  // |x| < 0.625: odd polynomial (no cancellation near 0); else 1 - 2 / (e^{2|x|} + 1)
  const float a = std::fabs(x), z = x * x;
  const float poly = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z
                        - 5.37397155531e-2f) * z + 1.33314422036e-1f) * z
                      - 3.33332819422e-1f) * z * x + x;
  const float big = std::copysign(1.0f - 2.0f / (exp_(2.0f * a) + 1.0f), x);
  return a < 0.625f ? poly : big;
}
inline double tanh_(double x) { return std::tanh(x); }

// One row of each step, over raw pointers with __restrict__ so the compiler vectorises the
// loop (inside the dispatch lambdas it does not). The equations are at the step functions.
template <typename T>
void lstm_forward_row(T* __restrict__ g, const T* __restrict__ cp, T* __restrict__ c,
                      T* __restrict__ h, int64_t H) {
  for (int64_t u = 0; u < H; ++u) {
    const T ig = sigmoid_(g[u]), fg = sigmoid_(g[H + u]);
    const T gg = tanh_(g[2 * H + u]), og = sigmoid_(g[3 * H + u]);
    g[u] = ig; g[H + u] = fg; g[2 * H + u] = gg; g[3 * H + u] = og;
    const T cu = fg * cp[u] + ig * gg;
    c[u] = cu;
    h[u] = og * tanh_(cu);
  }
}

template <typename T>
void lstm_backward_row(const T* __restrict__ g, const T* __restrict__ c, const T* __restrict__ cp,
                       const T* __restrict__ dh, T* __restrict__ dc, T* __restrict__ a,
                       T* __restrict__ dc0, bool carry, int64_t H) {
  const T s = carry ? 1 : 0;   // dc f or dc: arithmetic (exact), which vectorises, not a select
  for (int64_t u = 0; u < H; ++u) {
    const T ig = g[u], fg = g[H + u], gg = g[2 * H + u], og = g[3 * H + u];
    const T tc = tanh_(c[u]), d = dh[u];
    const T dcu = dc[u] + d * og * (1 - tc * tc);
    a[u] = dcu * gg * ig * (1 - ig);
    a[H + u] = dcu * cp[u] * fg * (1 - fg);
    a[2 * H + u] = dcu * ig * (1 - gg * gg);
    a[3 * H + u] = d * tc * og * (1 - og);
    dc[u] = dcu * (s * fg + (1 - s));
  }
  if (dc0)
    for (int64_t u = 0; u < H; ++u) dc0[u] += dc[u] * g[H + u];
}

template <typename T>
void gru_forward_row(T* __restrict__ r, const T* __restrict__ x, const T* __restrict__ hp,
                     T* __restrict__ n, T* __restrict__ h, int64_t H) {
  for (int64_t u = 0; u < H; ++u) {
    const T rg = sigmoid_(r[u]), zg = sigmoid_(r[H + u]);
    r[u] = rg; r[H + u] = zg;
    const T nu = tanh_(x[u] + rg * r[2 * H + u]);
    n[u] = nu;
    const T diff = hp[u] - nu;
    h[u] = zg < T(0.5) ? nu + zg * diff : hp[u] - diff * (1 - zg);
  }
}

template <typename T>
void gru_backward_row(const T* __restrict__ r, const T* __restrict__ n, const T* __restrict__ hp,
                      const T* __restrict__ d, T* __restrict__ ah, T* __restrict__ ax,
                      T* __restrict__ back, int64_t H) {
  for (int64_t u = 0; u < H; ++u) {
    const T rg = r[u], zg = r[H + u], nu = n[u], du = d[u];
    const T dn = du * (1 - zg) * (1 - nu * nu);
    const T dz = du * (hp[u] - nu) * zg * (1 - zg);
    const T dr = dn * r[2 * H + u] * rg * (1 - rg);
    ah[u] = dr; ah[H + u] = dz; ah[2 * H + u] = rg * dn;
    ax[u] = dr; ax[H + u] = dz; ax[2 * H + u] = dn;
  }
  if (back)
    for (int64_t u = 0; u < H; ++u) back[u] += d[u] * r[H + u];
}

template <typename T>
void rnn_backward_row(const T* __restrict__ h, const T* __restrict__ dout,
                      const T* __restrict__ carry, T* __restrict__ da, T* __restrict__ dh,
                      bool relu, int64_t H) {
  for (int64_t u = 0; u < H; ++u) {
    const T d = relu ? T(h[u] > 0) : 1 - h[u] * h[u];
    da[u] = dout[u] * d + carry[u] * d;     // the eager ops' order: dout f' + carry f'
  }
  if (dh)
    for (int64_t u = 0; u < H; ++u) dh[u] = dout[u] + carry[u];
}

// rows per parallel task: enough pointwise work (~16k elements) to pay for waking a thread
template <typename F> void for_rows(int64_t bs, int64_t width, const F& row) {
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(width, 1));
  at::parallel_for(0, bs, grain, [&](int64_t b, int64_t e) {
    for (int64_t j = b; j < e; ++j) row(j);
  });
}

template <typename T> struct Rows {   // a row block: row j starts at p + j * ld
  T* p;
  int64_t ld;
  explicit Rows(const at::Tensor& t)
      : p(t.defined() && t.numel() ? t.data_ptr<T>() : nullptr),
        ld(t.dim() == 2 ? t.stride(0) : 0) {}
  T* operator[](int64_t j) const { return p + j * ld; }
};

template <typename T>
const T* prev_row(const Rows<T>& prev, const Rows<T>& init, int64_t k, int64_t j) {
  return j < k ? prev[j] : init[j];
}

void check(const at::Tensor& t, const char* name) {
  TORCH_CHECK(!t.defined() || t.numel() == 0 || (t.dim() == 2 && t.stride(1) == 1),
              name, ": a 2-D row block with contiguous columns");
}

// LSTM forward step. gates (bs, 4H) holds a = x W_ih^T + b + h_{t-1} W_hh^T on entry and
// [i, f, g, o] = [sigmoid, sigmoid, tanh, sigmoid](a) on exit; c_t = f c_{t-1} + i g into c
// (bs, H); h = o tanh(c_t) into h (bs, H) (m_t, before W_hr, for a projected LSTM).
void lstm_forward(at::Tensor gates, at::Tensor prev_c, at::Tensor c0, int64_t k, at::Tensor c,
                  at::Tensor h) {
  for (auto* t : {&gates, &prev_c, &c0, &c, &h}) check(*t, "lstm_forward");
  const int64_t bs = gates.size(0), H = c.size(1);
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "lstm_forward", [&] {
    Rows<scalar_t> G(gates), P(prev_c), I(c0), C(c), O(h);
    for_rows(bs, 4 * H, [&](int64_t j) {
      lstm_forward_row(G[j], prev_row(P, I, k, j), C[j], O[j], H);
    });
  });
}

// LSTM backward step. Reads the saved gates [i, f, g, o] and c_t (bs, H), c_{t-1} (prev/init),
// dh = dL/dh_t (bs, H) (dL/dm_t with a projection) and dc = dL/dc_t from later steps (bs, H):
//   dc += dh o (1 - tanh^2 c_t)
//   da = [dc g i(1-i), dc c_{t-1} f(1-f), dc i (1-g^2), dh tanh(c_t) o(1-o)]   -> da (bs, 4H)
//   dc = dc f for rows [0, k) (dL/dc_{t-1}); rows [k, bs) add dc f to dc0 (if given) instead
void lstm_backward(at::Tensor gates, at::Tensor c, at::Tensor prev_c, at::Tensor c0, int64_t k,
                   at::Tensor dh, at::Tensor dc, at::Tensor da, at::Tensor dc0) {
  for (auto* t : {&gates, &c, &prev_c, &c0, &dh, &dc, &da, &dc0}) check(*t, "lstm_backward");
  const int64_t bs = gates.size(0), H = c.size(1);
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "lstm_backward", [&] {
    Rows<scalar_t> G(gates), C(c), P(prev_c), I(c0), DH(dh), DC(dc), DA(da), DC0(dc0);
    for_rows(bs, 4 * H, [&](int64_t j) {
      const bool carry = j < k;
      lstm_backward_row(G[j], C[j], prev_row(P, I, k, j), DH[j], DC[j], DA[j],
                        carry || !DC0.p ? nullptr : DC0[j], carry, H);
    });
  });
}

// GRU forward step. rzh (bs, 3H) holds [a_r, a_z, W_hn h_{t-1} + b_hn] on entry and
// [r, z] = sigmoid(a_r, a_z) in its first 2H columns on exit; xn (bs, H) = x W_in^T + b_in;
//   n = tanh(xn + r (W_hn h + b_hn)) -> n (bs, H);  h_t = (1 - z) n + z h_{t-1} -> h (bs, H)
// (the last as torch.lerp(n, h_{t-1}, z) forms it).
void gru_forward(at::Tensor rzh, at::Tensor xn, at::Tensor prev_h, at::Tensor h0, int64_t k,
                 at::Tensor n, at::Tensor h) {
  for (auto* t : {&rzh, &xn, &prev_h, &h0, &n, &h}) check(*t, "gru_forward");
  const int64_t bs = rzh.size(0), H = n.size(1);
  AT_DISPATCH_FLOATING_TYPES(rzh.scalar_type(), "gru_forward", [&] {
    Rows<scalar_t> R(rzh), X(xn), P(prev_h), I(h0), N(n), O(h);
    for_rows(bs, 3 * H, [&](int64_t j) {
      gru_forward_row(R[j], X[j], prev_row(P, I, k, j), N[j], O[j], H);
    });
  });
}

// GRU backward step. Reads the saved rzh = [r, z, W_hn h + b_hn], n (bs, H), h_{t-1}
// (prev/init) and dh = dL/dh_t (bs, H):
//   dA^n = dh (1-z)(1-n^2);  dA^z = dh (h_{t-1} - n) z(1-z);  dA^r = dA^n (W_hn h + b_hn) r(1-r)
//   dah (bs, 3H) = [dA^r, dA^z, r dA^n] (the recurrent GEMM's), dax (bs, 3H) = [dA^r, dA^z, dA^n]
//   dL/dh_{t-1} += dh z: into dprev rows [0, k), into dh0 (if given) rows [k, bs)
void gru_backward(at::Tensor rzh, at::Tensor n, at::Tensor prev_h, at::Tensor h0, int64_t k,
                  at::Tensor dh, at::Tensor dah, at::Tensor dax, at::Tensor dprev,
                  at::Tensor dh0) {
  for (auto* t : {&rzh, &n, &prev_h, &h0, &dh, &dah, &dax, &dprev, &dh0}) check(*t, "gru_backward");
  const int64_t bs = rzh.size(0), H = n.size(1);
  AT_DISPATCH_FLOATING_TYPES(rzh.scalar_type(), "gru_backward", [&] {
    Rows<scalar_t> R(rzh), N(n), P(prev_h), I(h0), DH(dh), AH(dah), AX(dax), DP(dprev), D0(dh0);
    for_rows(bs, 3 * H, [&](int64_t j) {
      gru_backward_row(R[j], N[j], prev_row(P, I, k, j), DH[j], AH[j], AX[j],
                       j < k ? DP[j] : (D0.p ? D0[j] : nullptr), H);
    });
  });
}

// RNN backward step. Reads h_t (bs, H) (the saved outputs), dout = dL/dout_t (bs, H) and
// carry = what flows back from step t+1, dA_{t+1} W_hh (bs, H):
//   da = (dout + carry) f'(a_t),  f' = 1 - h_t^2 (tanh) or [h_t > 0] (relu)   -> da (bs, H)
//   dh = dout + carry (the total dL/dh_t, for the gradient-flow recorder) when dh is given
void rnn_backward(at::Tensor h, at::Tensor dout, at::Tensor carry, bool relu, at::Tensor da,
                  at::Tensor dh) {
  for (auto* t : {&h, &dout, &carry, &da, &dh}) check(*t, "rnn_backward");
  const int64_t bs = h.size(0), H = h.size(1);
  AT_DISPATCH_FLOATING_TYPES(h.scalar_type(), "rnn_backward", [&] {
    Rows<scalar_t> O(h), D(dout), C(carry), A(da), DH(dh);
    for_rows(bs, H, [&](int64_t j) {
      rnn_backward_row(O[j], D[j], C[j], A[j], DH.p ? DH[j] : nullptr, relu, H);
    });
  });
}

}  // namespace
// (the module's bindings are at the end of steploops.cpp, which is appended to this file)
