// Bindings for the fused recurrent kernels (fusednn/recurrent.h): one forward
// and one backward for every cell and device. The caller
// (python/fusednn/ops/recurrent.py) validates everything and allocates outputs,
// the training cache (one buffer of recurrent_cache_elements(...), laid out by
// the C++ side) and the workspace (recurrent_workspace_elements(...)); this
// layer checks every array once more (device, dtype, shape: one check per op)
// so that a direct call cannot read or write out of bounds, then releases the
// GIL and calls the CPU (float32 or float64 NumPy arrays) or CUDA (float32
// device arrays, on `stream`) entry point. Optional arrays are None or arrays.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>

#include "bindings.h"
#include "fusednn/recurrent.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace fusednn::bindings {

namespace {

using In = nb::ndarray<nb::ro, nb::c_contig>;
using Out = nb::ndarray<nb::c_contig>;
using MaybeIn = std::optional<In>;
using MaybeOut = std::optional<Out>;

RecurrentSpec spec_of(const char* op, const std::string& cell, bool reset_after,
                      const std::string& activation) {
  RecurrentSpec spec;
  spec.reset_after = reset_after;
  if (cell == "lstm") {
    spec.cell = RecurrentCell::kLstm;
  } else if (cell == "gru") {
    spec.cell = RecurrentCell::kGru;
  } else if (cell == "simple_rnn") {
    spec.cell = RecurrentCell::kSimpleRnn;
  } else {
    fail(op, "cell must be 'lstm', 'gru' or 'simple_rnn', got '" + cell + "'");
  }
  if (activation == "tanh") {
    spec.activation = RnnActivation::kTanh;
  } else if (activation == "relu") {
    spec.activation = RnnActivation::kRelu;
  } else {
    fail(op, "activation must be 'tanh' or 'relu', got '" + activation + "'");
  }
  return spec;
}

RecurrentShape shape_from(const char* op, std::int64_t N, std::int64_t T, std::int64_t F,
                          std::int64_t U) {
  if (N < 0 || T < 1 || F < 1 || U < 1) {
    fail(op, "need N >= 0 and T, F, U >= 1, got N=" + std::to_string(N) + ", T=" +
                 std::to_string(T) + ", F=" + std::to_string(F) + ", U=" + std::to_string(U));
  }
  return {N, T, F, U};
}

#if FUSEDNN_WITH_CUDA
cuda::RecurrentAlgorithm algorithm_of(const char* op, const std::string& name) {
  if (name == "auto") return cuda::RecurrentAlgorithm::kAuto;
  if (name == "per_step") return cuda::RecurrentAlgorithm::kPerStep;
  if (name == "persistent") return cuda::RecurrentAlgorithm::kPersistent;
  fail(op, "algorithm must be 'auto', 'per_step' or 'persistent', got '" + name + "'");
}
#endif

// The checks of one call: every array on x's device, every float array of
// x's dtype, shapes from x (N, T, F) and recurrent_kernel (U, gU).
class Call {
 public:
  Call(const char* op, const RecurrentSpec& spec, const In& x, const In& recurrent_kernel)
      : op_(op), spec_(spec), device_type_(x.device_type()), device_id_(x.device_id()),
        dtype_(x.dtype()) {
    const bool cpu = device_type_ == nb::device::cpu::value;
    if (!cpu && device_type_ != nb::device::cuda::value) fail(op, "x must be a CPU or CUDA array");
    const bool f32 = dtype_ == nb::dtype<float>(), f64 = dtype_ == nb::dtype<double>();
    if (!(f32 || (cpu && f64))) {
      throw nb::type_error((std::string(op) + ": x must be float32" +
                            (cpu ? " or float64" : " on the GPU"))
                               .c_str());
    }
    if (x.ndim() != 3 || recurrent_kernel.ndim() != 2) {
      fail(op, "x must be (N, T, F) and recurrent_kernel (U, gU), got " + shape_str(x) +
                   " and " + shape_str(recurrent_kernel));
    }
    shape_ = shape_from(op, static_cast<std::int64_t>(x.shape(0)),
                        static_cast<std::int64_t>(x.shape(1)),
                        static_cast<std::int64_t>(x.shape(2)),
                        static_cast<std::int64_t>(recurrent_kernel.shape(0)));
    G_ = gate_count(spec.cell) * shape_.U;
    floats("recurrent_kernel", recurrent_kernel, {shape_.U, G_});
  }

  const RecurrentShape& shape() const { return shape_; }
  std::int64_t gate_width() const { return G_; }
  bool on_cpu() const { return device_type_ == nb::device::cpu::value; }
  bool is_double() const { return dtype_ == nb::dtype<double>(); }
  bool lstm() const { return spec_.cell == RecurrentCell::kLstm; }
  const char* op() const { return op_; }

  // A float array of x's dtype and device with shape `dims`.
  template <typename A>
  void floats(const char* name, const A& a, std::initializer_list<std::int64_t> dims) const {
    placed(name, a);
    same_dtype(name, a);
    expect_shape(op_, name, a, dims);
  }

  // The same for an array that the LSTM takes and the other cells do not
  // (c0, c_T, dc0; dc_T may be None).
  template <typename A>
  void lstm_only(const char* name, const std::optional<A>& a,
                 std::initializer_list<std::int64_t> dims, bool required = true) const {
    if (a.has_value() != lstm() && (a.has_value() || required)) {
      fail(op_, std::string(name) + (lstm() ? " is required" : " must be None") +
                    " for this cell");
    }
    if (a) floats(name, *a, dims);
  }

  void masks(const MaybeIn& mask, const MaybeIn& recurrent_mask) const {
    if (mask) {
      placed("mask", *mask);
      if (mask->dtype() != nb::dtype<std::uint8_t>()) {
        throw nb::type_error((std::string(op_) + ": mask must be uint8").c_str());
      }
      expect_shape(op_, "mask", *mask, {shape_.N, shape_.T});
    }
    if (recurrent_mask) floats("recurrent_mask", *recurrent_mask, {shape_.N, shape_.U});
  }

  // A 1-D float buffer of at least `elements`.
  template <typename A>
  void buffer(const char* name, const A& a, std::int64_t elements) const {
    placed(name, a);
    same_dtype(name, a);
    if (a.ndim() != 1 || static_cast<std::int64_t>(a.shape(0)) < elements) {
      fail(op_, std::string(name) + " must be 1-D with at least " + std::to_string(elements) +
                    " elements, got " + shape_str(a));
    }
  }

 private:
  template <typename A>
  void same_dtype(const char* name, const A& a) const {
    if (a.dtype() != dtype_) {
      throw nb::type_error((std::string(op_) + ": " + name + " must have the dtype of x").c_str());
    }
  }

  template <typename A>
  void placed(const char* name, const A& a) const {
    if (a.device_type() != device_type_ || a.device_id() != device_id_) {
      throw nb::type_error(
          (std::string(op_) + ": " + name + " must be on the device of x").c_str());
    }
  }

  const char* op_;
  RecurrentSpec spec_;
  int device_type_;
  int device_id_;
  nb::dlpack::dtype dtype_;
  RecurrentShape shape_{};
  std::int64_t G_ = 0;
};

template <typename Real, typename A>
Real* ptr(const A& a) {
  return static_cast<Real*>(const_cast<void*>(static_cast<const void*>(a.data())));
}

template <typename Real, typename A>
Real* ptr(const std::optional<A>& a) {
  return a ? ptr<Real>(*a) : nullptr;
}

template <typename Real>
RecurrentInputs<Real> inputs_of(const In& x, const MaybeIn& h0, const MaybeIn& c0,
                                const MaybeIn& mask, const MaybeIn& recurrent_mask) {
  RecurrentInputs<Real> in;
  in.x = ptr<Real>(x);
  in.h0 = ptr<Real>(h0);
  in.c0 = ptr<Real>(c0);
  in.mask = ptr<std::uint8_t>(mask);
  in.recurrent_mask = ptr<Real>(recurrent_mask);
  return in;
}

template <typename Real>
RecurrentWeights<Real> weights_of(const In& kernel, const In& recurrent_kernel,
                                  const MaybeIn& bias) {
  return {ptr<Real>(kernel), ptr<Real>(recurrent_kernel), ptr<Real>(bias)};
}

std::int64_t bias_size(const RecurrentSpec& spec, std::int64_t G) {
  return spec.cell == RecurrentCell::kGru && spec.reset_after ? 2 * G : G;
}

std::string recurrent_forward(const std::string& cell, bool reset_after,
                              const std::string& activation, In x, In h0, MaybeIn c0, In kernel,
                              In recurrent_kernel, In bias, MaybeIn mask, MaybeIn recurrent_mask,
                              Out y, Out h_T, MaybeOut c_T, Out cache, bool training,
                              Out workspace, const std::string& algorithm,
                              std::uintptr_t stream) {
  const char* op = "recurrent_forward";
  const RecurrentSpec spec = spec_of(op, cell, reset_after, activation);
  const Call call(op, spec, x, recurrent_kernel);
  const RecurrentShape& s = call.shape();
  const std::int64_t G = call.gate_width();
  call.floats("h0", h0, {s.N, s.U});
  call.lstm_only("c0", c0, {s.N, s.U});
  call.floats("kernel", kernel, {s.F, G});
  call.floats("bias", bias, {bias_size(spec, G)});
  call.masks(mask, recurrent_mask);
  call.floats("y", y, {s.N, s.T, s.U});
  call.floats("h_T", h_T, {s.N, s.U});
  call.lstm_only("c_T", c_T, {s.N, s.U});
  const RecurrentCacheLayout layout =
      cache_layout(spec, s, training, recurrent_mask.has_value());
  call.buffer("cache", cache, layout.elements);

  const auto run_cpu = [&](auto real) -> std::string {
    using Real = decltype(real);
    if (algorithm != "auto") fail(op, "the CPU kernels take only algorithm 'auto'");
    const RecurrentOutputs<Real> out{ptr<Real>(y), ptr<Real>(h_T), ptr<Real>(c_T)};
    nb::gil_scoped_release release;
    cpu::recurrent_forward<Real>(spec, s, inputs_of<Real>(x, h0, c0, mask, recurrent_mask),
                                 weights_of<Real>(kernel, recurrent_kernel, bias), out, training,
                                 ptr<Real>(cache));
    return "cpu";
  };
  if (call.on_cpu()) return call.is_double() ? run_cpu(double{}) : run_cpu(float{});
#if FUSEDNN_WITH_CUDA
  const cuda::RecurrentAlgorithm requested = algorithm_of(op, algorithm);
  call.buffer("workspace", workspace, cuda::workspace_elements(cuda::RecurrentKernel::kForward, s));
  const RecurrentOutputs<float> out{ptr<float>(y), ptr<float>(h_T), ptr<float>(c_T)};
  nb::gil_scoped_release release;
  return cuda::algorithm_name(cuda::recurrent_forward(
      spec, s, requested, inputs_of<float>(x, h0, c0, mask, recurrent_mask),
      weights_of<float>(kernel, recurrent_kernel, bias), out, training, ptr<float>(cache),
      ptr<float>(workspace), stream));
#else
  (void)workspace, (void)stream;
  no_cuda(op);
#endif
}

void recurrent_backward(const std::string& cell, bool reset_after, const std::string& activation,
                        In x, MaybeIn c0, In kernel, In recurrent_kernel, MaybeIn mask,
                        MaybeIn recurrent_mask, In cache, In dy, MaybeIn dh_T, MaybeIn dc_T,
                        MaybeOut dx, Out dh0, MaybeOut dc0, Out dkernel, Out drecurrent_kernel,
                        Out dbias, Out workspace, std::uintptr_t stream) {
  const char* op = "recurrent_backward";
  const RecurrentSpec spec = spec_of(op, cell, reset_after, activation);
  const Call call(op, spec, x, recurrent_kernel);
  const RecurrentShape& s = call.shape();
  const std::int64_t G = call.gate_width();
  call.lstm_only("c0", c0, {s.N, s.U});
  call.floats("kernel", kernel, {s.F, G});
  call.masks(mask, recurrent_mask);
  call.buffer("cache", cache, cache_layout(spec, s, true, recurrent_mask.has_value()).elements);
  call.floats("dy", dy, {s.N, s.T, s.U});
  if (dh_T) call.floats("dh_T", *dh_T, {s.N, s.U});
  call.lstm_only("dc_T", dc_T, {s.N, s.U}, false);
  if (dx) call.floats("dx", *dx, {s.N, s.T, s.F});  // None: not computed
  call.floats("dh0", dh0, {s.N, s.U});
  call.lstm_only("dc0", dc0, {s.N, s.U});
  call.floats("dkernel", dkernel, {s.F, G});
  call.floats("drecurrent_kernel", drecurrent_kernel, {s.U, G});
  call.floats("dbias", dbias, {bias_size(spec, G)});
  const std::int64_t gate_gradients = backward_workspace_elements(spec, s);

  const auto gradients_of = [&](auto real) {
    using Real = decltype(real);
    return RecurrentGradients<Real>{ptr<Real>(dx),      ptr<Real>(dh0),
                                    ptr<Real>(dc0),     ptr<Real>(dkernel),
                                    ptr<Real>(drecurrent_kernel), ptr<Real>(dbias)};
  };
  const auto run_cpu = [&](auto real) {
    using Real = decltype(real);
    call.buffer("workspace", workspace, gate_gradients);
    const RecurrentOutputGradients<Real> out_grads{ptr<Real>(dy), ptr<Real>(dh_T),
                                                   ptr<Real>(dc_T)};
    nb::gil_scoped_release release;
    cpu::recurrent_backward<Real>(spec, s, inputs_of<Real>(x, std::nullopt, c0, mask,
                                                          recurrent_mask),
                                  weights_of<Real>(kernel, recurrent_kernel, std::nullopt),
                                  ptr<Real>(cache), out_grads, gradients_of(real),
                                  ptr<Real>(workspace));
  };
  if (call.on_cpu()) return call.is_double() ? run_cpu(double{}) : run_cpu(float{});
#if FUSEDNN_WITH_CUDA
  // The workspace holds the gate gradients, then the CUDA kernels' own part.
  call.buffer("workspace", workspace,
              gate_gradients + cuda::workspace_elements(cuda::RecurrentKernel::kBackward, s));
  const RecurrentOutputGradients<float> out_grads{ptr<float>(dy), ptr<float>(dh_T),
                                                  ptr<float>(dc_T)};
  nb::gil_scoped_release release;
  cuda::recurrent_backward(spec, s, inputs_of<float>(x, std::nullopt, c0, mask, recurrent_mask),
                           weights_of<float>(kernel, recurrent_kernel, std::nullopt),
                           ptr<float>(cache), out_grads, gradients_of(float{}),
                           ptr<float>(workspace), ptr<float>(workspace) + gate_gradients, stream);
#else
  (void)stream;
  no_cuda(op);
#endif
}

// Elements of the forward's cache buffer (in inference its gates workspace).
std::int64_t cache_elements(const std::string& cell, bool reset_after, std::int64_t N,
                            std::int64_t T, std::int64_t F, std::int64_t U, bool training,
                            bool recurrent_masked) {
  const char* op = "recurrent_cache_elements";
  return cache_layout(spec_of(op, cell, reset_after, "tanh"), shape_from(op, N, T, F, U),
                      training, recurrent_masked)
      .elements;
}

// Elements of the workspace of a forward or backward call on the CPU or GPU.
std::int64_t workspace_elements(const std::string& direction, const std::string& cell,
                                bool reset_after, std::int64_t N, std::int64_t T, std::int64_t F,
                                std::int64_t U, bool on_gpu) {
  const char* op = "recurrent_workspace_elements";
  const RecurrentSpec spec = spec_of(op, cell, reset_after, "tanh");
  const RecurrentShape s = shape_from(op, N, T, F, U);
  if (direction != "forward" && direction != "backward") {
    fail(op, "direction must be 'forward' or 'backward', got '" + direction + "'");
  }
  const bool forward = direction == "forward";
  const std::int64_t gate_gradients = forward ? 0 : backward_workspace_elements(spec, s);
  if (!on_gpu) return gate_gradients;
#if FUSEDNN_WITH_CUDA
  return gate_gradients +
         cuda::workspace_elements(
             forward ? cuda::RecurrentKernel::kForward : cuda::RecurrentKernel::kBackward, s);
#else
  no_cuda(op);
#endif
}

// name -> (offset, shape) of the arrays in a training cache: for tests that
// check what the kernels leave there; the ops themselves never look inside.
nb::dict cache_layout_of(const std::string& cell, bool reset_after, std::int64_t N,
                         std::int64_t T, std::int64_t F, std::int64_t U, bool recurrent_masked) {
  const char* op = "recurrent_cache_layout";
  const RecurrentSpec spec = spec_of(op, cell, reset_after, "tanh");
  const RecurrentShape s = shape_from(op, N, T, F, U);
  const RecurrentCacheLayout layout = cache_layout(spec, s, true, recurrent_masked);
  nb::dict arrays;
  const auto add = [&](const char* name, std::int64_t offset, std::int64_t width) {
    if (offset >= 0) arrays[name] = nb::make_tuple(offset, nb::make_tuple(N, T, width));
  };
  add("gates", layout.gates, gate_count(spec.cell) * U);
  add("cell", layout.cell, U);
  add("h_in", layout.h_in, U);
  add("h_prev", layout.h_prev, U);
  add("recurrent_h", layout.recurrent_h, U);
  return arrays;
}

}  // namespace

void bind_recurrent(nb::module_& m) {
  m.def("recurrent_forward", &recurrent_forward, "cell"_a, "reset_after"_a, "activation"_a,
        "x"_a.noconvert(), "h0"_a.noconvert(), "c0"_a.noconvert().none(), "kernel"_a.noconvert(),
        "recurrent_kernel"_a.noconvert(), "bias"_a.noconvert(), "mask"_a.noconvert().none(),
        "recurrent_mask"_a.noconvert().none(), "y"_a.noconvert(), "h_T"_a.noconvert(),
        "c_T"_a.noconvert().none(), "cache"_a.noconvert(), "training"_a,
        "workspace"_a.noconvert(), "algorithm"_a, "stream"_a,
        "A recurrent layer's forward over a sequence (cell 'lstm', 'gru' or 'simple_rnn'); "
        "returns the algorithm that ran ('cpu', 'per_step' or 'persistent').");
  m.def("recurrent_backward", &recurrent_backward, "cell"_a, "reset_after"_a, "activation"_a,
        "x"_a.noconvert(), "c0"_a.noconvert().none(), "kernel"_a.noconvert(),
        "recurrent_kernel"_a.noconvert(), "mask"_a.noconvert().none(),
        "recurrent_mask"_a.noconvert().none(), "cache"_a.noconvert(), "dy"_a.noconvert(),
        "dh_T"_a.noconvert().none(), "dc_T"_a.noconvert().none(), "dx"_a.noconvert().none(),
        "dh0"_a.noconvert(), "dc0"_a.noconvert().none(), "dkernel"_a.noconvert(),
        "drecurrent_kernel"_a.noconvert(), "dbias"_a.noconvert(), "workspace"_a.noconvert(),
        "stream"_a, "A recurrent layer's backward from the training forward's cache.");
  m.def("recurrent_cache_elements", &cache_elements, "cell"_a, "reset_after"_a, "N"_a, "T"_a,
        "F"_a, "U"_a, "training"_a, "recurrent_masked"_a,
        "Elements of the cache buffer recurrent_forward fills (its dtype is x's).");
  m.def("recurrent_workspace_elements", &workspace_elements, "direction"_a, "cell"_a,
        "reset_after"_a, "N"_a, "T"_a, "F"_a, "U"_a, "on_gpu"_a,
        "Elements of the workspace recurrent_forward or recurrent_backward needs.");
  m.def("recurrent_cache_layout", &cache_layout_of, "cell"_a, "reset_after"_a, "N"_a, "T"_a,
        "F"_a, "U"_a, "recurrent_masked"_a,
        "{name: (offset, shape)} of the arrays in a training cache (for tests).");
}

}  // namespace fusednn::bindings
