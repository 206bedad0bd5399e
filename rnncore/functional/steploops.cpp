// The "bptt" engine's step loops in C++, for the tensors the fused kernels serve (appended to
// fused.cpp, whose step kernels they call; fused.py builds both). Each loop is the Python
// loop of forward.py / backward.py that it replaces, line for line: the same GEMMs, the same
// kernels, the same buffers. What it removes is the interpreter between them, ~10 us a step
// (a few slices, a method call, two or three dispatches), which at B32 H256 is 5-10% of a
// vanilla RNN's step. Torch ops are called through at::cpu:: (no dispatcher) on row views.
//
// A loop runs the steps of `table` (S, 4) int64 [off, bs, off_prev, n_carry] in order (a
// Schedule's steps, or a block of them reversed); `off` of a step's rows in a per-block
// buffer is off - base. The recurrent GEMM is stepgemm.StepGemm's: x w^T with wt (in, out)
// contiguous, or MKL's packed weight for exactly `rows` rows when `packed` has elements.
#include <ATen/CPUFunctions.h>
#include <ATen/core/dispatch/Dispatcher.h>

namespace {

// rows [off, off + n) of a 2-D tensor, as a view without a dispatch (the base outlives it)
at::Tensor rows(const at::Tensor& t, int64_t off, int64_t n) {
  TORCH_CHECK(t.dim() == 2 && (t.stride(1) == 1 || t.size(1) <= 1) && off >= 0 &&
              off + n <= t.size(0), "steploops: rows of a 2-D tensor with contiguous columns");
  auto* p = static_cast<char*>(t.data_ptr()) + off * t.stride(0) * t.element_size();
  return at::from_blob(p, {n, t.size(1)}, {t.stride(0), 1}, t.options());
}

struct Gemm {   // stepgemm.StepGemm: out (+)= x w^T
  at::Tensor wt, packed, w;
  int64_t n_rows;

  bool use_packed(const at::Tensor& x) const {
    return packed.defined() && packed.numel() > 0 && x.size(0) == n_rows;
  }
  at::Tensor packed_product(const at::Tensor& x) const {
    static auto op = c10::Dispatcher::singleton()
        .findSchemaOrThrow("mkl::_mkl_linear", "")
        .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                          const std::optional<at::Tensor>&, int64_t)>();
    return op.call(x, packed, w, std::nullopt, n_rows);
  }
  void add_to(at::Tensor out, const at::Tensor& x) const {
    if (x.size(0) == 0) return;
    if (use_packed(x)) out.add_(packed_product(x));
    else at::cpu::addmm_out(out, out, x, wt);
  }
  void into(at::Tensor out, const at::Tensor& x) const {
    if (x.size(0) == 0) return;
    if (use_packed(x)) out.copy_(packed_product(x));
    else at::cpu::mm_out(out, x, wt);
  }
};

struct Step { int64_t off, bs, off_prev, k; };

// a_t (bs, G*H) += h_{t-1} W_hh^T: rows [0, k) read the previous step's outputs, [k, bs) h0
void add_recurrent(const Gemm& rec, const at::Tensor& a, const at::Tensor& out,
                   const at::Tensor& h0, const Step& s) {
  rec.add_to(rows(a, 0, s.k), rows(out, s.off_prev, s.k));
  rec.add_to(rows(a, s.k, s.bs - s.k), rows(h0, s.k, s.bs - s.k));
}

template <typename F> void each_step(const at::Tensor& table, const F& f) {
  TORCH_CHECK(table.dtype() == at::kLong && table.dim() == 2 && table.size(1) == 4 &&
              table.is_contiguous(), "steps: an (S, 4) int64 table");
  const int64_t* p = table.data_ptr<int64_t>();
  for (int64_t i = 0; i < table.size(0); ++i, p += 4) f(Step{p[0], p[1], p[2], p[3]});
}

// out (N, H) = x W_ih^T + b on entry; h_t = f(a_t) on exit            (forward.py: _rnn_forward)
void rnn_forward_loop(at::Tensor table, at::Tensor out, at::Tensor h0, bool relu,
                      at::Tensor wt, at::Tensor packed, at::Tensor w, int64_t n_rows) {
  const Gemm rec{wt, packed, w, n_rows};
  each_step(table, [&](const Step& s) {
    auto o = rows(out, s.off, s.bs);
    add_recurrent(rec, o, out, h0, s);
    if (relu) at::cpu::clamp_min_(o, 0); else at::cpu::tanh_(o);
  });
}

// gates (N, 4H) = x W_ih^T + b on entry           (forward.py: _lstm_forward, fused branch)
// ms: m_t rows (N or B, H) with a projection (proj holds W_hr), else undefined/empty
void lstm_forward_loop(at::Tensor table, at::Tensor gates, at::Tensor cs, at::Tensor out,
                       at::Tensor h0, at::Tensor c0, at::Tensor ms, bool save,
                       at::Tensor wt, at::Tensor packed, at::Tensor w, int64_t n_rows,
                       at::Tensor pwt, at::Tensor ppacked, at::Tensor pw) {
  const Gemm rec{wt, packed, w, n_rows}, proj{pwt, ppacked, pw, n_rows};
  const bool projected = ms.defined() && ms.numel() > 0;
  each_step(table, [&](const Step& s) {
    auto g = rows(gates, s.off, s.bs);
    add_recurrent(rec, g, out, h0, s);
    auto c = rows(cs, s.off, s.bs);
    auto m = !projected ? rows(out, s.off, s.bs) : rows(ms, save ? s.off : 0, s.bs);
    lstm_forward(g, rows(cs, s.off_prev, s.k), c0, s.k, c, m);
    if (projected) proj.into(rows(out, s.off, s.bs), m);
  });
}

// rzh (N, 3H) = [x_r + b_r, x_z + b_z | b_hn] on entry, xn (N, H)   (forward.py: _gru_forward)
void gru_forward_loop(at::Tensor table, at::Tensor rzh, at::Tensor xn, at::Tensor nn,
                      at::Tensor out, at::Tensor h0, bool save,
                      at::Tensor wt, at::Tensor packed, at::Tensor w, int64_t n_rows) {
  const Gemm rec{wt, packed, w, n_rows};
  each_step(table, [&](const Step& s) {
    auto hb = rows(rzh, s.off, s.bs);
    add_recurrent(rec, hb, out, h0, s);
    gru_forward(hb, rows(xn, s.off, s.bs), rows(out, s.off_prev, s.k), h0, s.k,
                rows(nn, save ? s.off : 0, s.bs), rows(out, s.off, s.bs));
  });
}

// One block of the RNN's backward (backward.py: _rnn_backward): dA rows are off - base;
// carry (B, H) holds dL/dh_t's recurrent part, k_in its valid rows; returns the new k_in.
int64_t rnn_backward_loop(at::Tensor table, int64_t base, at::Tensor out, at::Tensor grad_out,
                          at::Tensor grad_hn, at::Tensor carry, int64_t k_in, bool relu,
                          at::Tensor dA, at::Tensor dH, at::Tensor dh0,
                          at::Tensor wt, at::Tensor packed, at::Tensor w, int64_t n_rows) {
  const Gemm rec{wt, packed, w, n_rows};
  const bool record = dH.defined() && dH.numel() > 0, need_h0 = dh0.defined() && dh0.numel();
  each_step(table, [&](const Step& s) {
    if (k_in < s.bs)                   // sequences whose final state is this step's
      rows(carry, k_in, s.bs - k_in).copy_(rows(grad_hn, k_in, s.bs - k_in));
    auto da = rows(dA, s.off - base, s.bs);
    rnn_backward(rows(out, s.off, s.bs), rows(grad_out, s.off, s.bs), rows(carry, 0, s.bs),
                 relu, da, record ? rows(dH, s.off, s.bs) : at::Tensor());
    rec.into(rows(carry, 0, s.k), rows(da, 0, s.k));
    if (need_h0) rec.add_to(rows(dh0, s.k, s.bs - s.k), rows(da, s.k, s.bs - s.k));
    k_in = s.k;
  });
  return k_in;
}

// One block of the LSTM's backward (backward.py: _lstm_backward, fused branch); dm_buf (B, H)
// and w_hr (P, H) with a projection (dL/dm_t = dL/dh_t W_hr), else empty.
void lstm_backward_loop(at::Tensor table, int64_t base, at::Tensor gates, at::Tensor cs,
                        at::Tensor c0, at::Tensor dH, at::Tensor dc_run, at::Tensor dA,
                        at::Tensor dh0, at::Tensor dc0, at::Tensor dm_buf, at::Tensor w_hr,
                        at::Tensor wt, at::Tensor packed, at::Tensor w, int64_t n_rows) {
  const Gemm rec{wt, packed, w, n_rows};
  const bool projected = w_hr.defined() && w_hr.numel() > 0;
  const bool need_h0 = dh0.defined() && dh0.numel();
  each_step(table, [&](const Step& s) {
    auto dh = rows(dH, s.off, s.bs);
    if (projected) {
      auto dm = rows(dm_buf, 0, s.bs);
      at::cpu::mm_out(dm, dh, w_hr);
      dh = dm;
    }
    auto da = rows(dA, s.off - base, s.bs);
    lstm_backward(rows(gates, s.off, s.bs), rows(cs, s.off, s.bs), rows(cs, s.off_prev, s.k),
                  c0, s.k, dh, rows(dc_run, 0, s.bs), da, dc0);
    if (need_h0) rec.add_to(rows(dh0, s.k, s.bs - s.k), rows(da, s.k, s.bs - s.k));
    rec.add_to(rows(dH, s.off_prev, s.k), rows(da, 0, s.k));
  });
}

// One block of the GRU's backward (backward.py: _gru_backward, fused branch)
void gru_backward_loop(at::Tensor table, int64_t base, at::Tensor rzh, at::Tensor nn,
                       at::Tensor out, at::Tensor h0, at::Tensor dH, at::Tensor dAh,
                       at::Tensor dAx, at::Tensor dh0,
                       at::Tensor wt, at::Tensor packed, at::Tensor w, int64_t n_rows) {
  const Gemm rec{wt, packed, w, n_rows};
  const bool need_h0 = dh0.defined() && dh0.numel();
  each_step(table, [&](const Step& s) {
    auto da = rows(dAh, s.off - base, s.bs);
    gru_backward(rows(rzh, s.off, s.bs), rows(nn, s.off, s.bs), rows(out, s.off_prev, s.k), h0,
                 s.k, rows(dH, s.off, s.bs), da, rows(dAx, s.off - base, s.bs),
                 rows(dH, s.off_prev, s.k), dh0);
    rec.add_to(rows(dH, s.off_prev, s.k), rows(da, 0, s.k));
    if (need_h0) rec.add_to(rows(dh0, s.k, s.bs - s.k), rows(da, s.k, s.bs - s.k));
  });
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  // the GIL is not needed while the kernels run (autograd's backward threads, DataLoader)
  auto nogil = pybind11::call_guard<pybind11::gil_scoped_release>();
  // only the loops: the step kernels of fused.cpp are called from them, never from Python
  m.def("rnn_forward_loop", &rnn_forward_loop, nogil);
  m.def("lstm_forward_loop", &lstm_forward_loop, nogil);
  m.def("gru_forward_loop", &gru_forward_loop, nogil);
  m.def("rnn_backward_loop", &rnn_backward_loop, nogil);
  m.def("lstm_backward_loop", &lstm_backward_loop, nogil);
  m.def("gru_backward_loop", &gru_backward_loop, nogil);
}
