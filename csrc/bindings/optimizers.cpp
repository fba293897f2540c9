// Bindings for the fused optimizer updates (fusednn/optimizers.h). Arguments
// are lists of arrays, one entry per parameter tensor; every array is updated
// in place, so none may be converted (a converted copy would swallow the
// update): all arrays are .noconvert() and must already be C-contiguous.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "bindings.h"
#include "fusednn/optimizers.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace fusednn::bindings {

namespace {

template <typename T, typename Device>
using Tensor = nb::ndarray<T, nb::c_contig, Device>;

template <typename T, typename Device>
using TensorList = std::vector<Tensor<T, Device>>;

// Raw pointers and sizes of one call, gathered before the GIL is released.
template <typename T>
struct Gathered {
  std::vector<T*> params, ms, vs;
  std::vector<const T*> grads;
  std::vector<std::int64_t> sizes;
};

template <typename P, typename L>
void check_list(const char* op, const char* name, const P& params, const L& list) {
  if (list.size() != params.size()) {
    throw nb::value_error((std::string(op) + ": expected as many " + name + " as params (" +
                           std::to_string(params.size()) + "), got " + std::to_string(list.size()))
                              .c_str());
  }
  for (std::size_t i = 0; i < list.size(); ++i) {
    if (list[i].size() != params[i].size()) {
      throw nb::value_error((std::string(op) + ": " + name + "[" + std::to_string(i) + "] has " +
                             std::to_string(list[i].size()) + " elements, params[" +
                             std::to_string(i) + "] has " + std::to_string(params[i].size()))
                                .c_str());
    }
  }
}

template <typename T, typename Device>
Gathered<T> gather(const TensorList<T, Device>& params, const TensorList<const T, Device>& grads) {
  Gathered<T> g;
  for (std::size_t i = 0; i < params.size(); ++i) {
    g.params.push_back(params[i].data());
    g.grads.push_back(grads[i].data());
    g.sizes.push_back(static_cast<std::int64_t>(params[i].size()));
  }
  return g;
}

template <typename T, typename Device>
std::vector<T*> pointers(const TensorList<T, Device>& list) {
  std::vector<T*> out;
  for (const auto& a : list) out.push_back(a.data());
  return out;
}

void check_step(std::int64_t step) {
  if (step < 1) {
    throw nb::value_error(("adam_update: step must be >= 1, got " + std::to_string(step)).c_str());
  }
}

template <typename T>
void adam_cpu(TensorList<T, nb::device::cpu> params, TensorList<const T, nb::device::cpu> grads,
              TensorList<T, nb::device::cpu> ms, TensorList<T, nb::device::cpu> vs,
              double learning_rate, double beta_1, double beta_2, double epsilon, std::int64_t step,
              double weight_decay) {
  check_list("adam_update", "grads", params, grads);
  check_list("adam_update", "ms", params, ms);
  check_list("adam_update", "vs", params, vs);
  check_step(step);
  Gathered<T> g = gather(params, grads);
  g.ms = pointers(ms);
  g.vs = pointers(vs);
  const AdamHyperparameters hyper =
      adam_hyperparameters(learning_rate, beta_1, beta_2, epsilon, step, weight_decay);
  nb::gil_scoped_release release;
  cpu::adam_update<T>(g.params.data(), g.grads.data(), g.ms.data(), g.vs.data(), g.sizes.data(),
                      static_cast<std::int64_t>(g.sizes.size()), hyper);
}

template <typename T>
void sgd_cpu(TensorList<T, nb::device::cpu> params, TensorList<const T, nb::device::cpu> grads,
             std::optional<TensorList<T, nb::device::cpu>> moments, double learning_rate,
             double momentum, bool nesterov, double weight_decay) {
  check_list("sgd_update", "grads", params, grads);
  Gathered<T> g = gather(params, grads);
  if (moments) {
    check_list("sgd_update", "moments", params, *moments);
    g.ms = pointers(*moments);
  }
  const SgdHyperparameters hyper{learning_rate, momentum, learning_rate * weight_decay, nesterov};
  nb::gil_scoped_release release;
  cpu::sgd_update<T>(g.params.data(), g.grads.data(), moments ? g.ms.data() : nullptr,
                     g.sizes.data(), static_cast<std::int64_t>(g.sizes.size()), hyper);
}

void adam_cuda(TensorList<float, nb::device::cuda> params,
               TensorList<const float, nb::device::cuda> grads,
               TensorList<float, nb::device::cuda> ms, TensorList<float, nb::device::cuda> vs,
               double learning_rate, double beta_1, double beta_2, double epsilon,
               std::int64_t step, double weight_decay, std::uintptr_t stream) {
  check_list("adam_update", "grads", params, grads);
  check_list("adam_update", "ms", params, ms);
  check_list("adam_update", "vs", params, vs);
  check_step(step);
#if FUSEDNN_WITH_CUDA
  Gathered<float> g = gather(params, grads);
  g.ms = pointers(ms);
  g.vs = pointers(vs);
  const AdamHyperparameters hyper =
      adam_hyperparameters(learning_rate, beta_1, beta_2, epsilon, step, weight_decay);
  nb::gil_scoped_release release;
  cuda::adam_update(g.params.data(), g.grads.data(), g.ms.data(), g.vs.data(), g.sizes.data(),
                    static_cast<std::int64_t>(g.sizes.size()), hyper, stream);
#else
  no_cuda("adam_update");
#endif
}

void sgd_cuda(TensorList<float, nb::device::cuda> params,
              TensorList<const float, nb::device::cuda> grads,
              std::optional<TensorList<float, nb::device::cuda>> moments, double learning_rate,
              double momentum, bool nesterov, double weight_decay, std::uintptr_t stream) {
  check_list("sgd_update", "grads", params, grads);
  if (moments) check_list("sgd_update", "moments", params, *moments);
#if FUSEDNN_WITH_CUDA
  Gathered<float> g = gather(params, grads);
  if (moments) g.ms = pointers(*moments);
  const SgdHyperparameters hyper{learning_rate, momentum, learning_rate * weight_decay, nesterov};
  nb::gil_scoped_release release;
  cuda::sgd_update(g.params.data(), g.grads.data(), moments ? g.ms.data() : nullptr,
                   g.sizes.data(), static_cast<std::int64_t>(g.sizes.size()), hyper, stream);
#else
  no_cuda("sgd_update");
#endif
}

}  // namespace

void bind_optimizers(nb::module_& m) {
  const char* adam_doc =
      "Adam/AdamW (Keras form) over lists of same-size arrays, updating params, ms, vs in place.";
  const char* sgd_doc =
      "SGD with optional (Nesterov) momentum and decoupled weight decay, in place; "
      "moments is None for plain SGD.";
  m.def("adam_update_cpu", &adam_cpu<float>, "params"_a.noconvert(), "grads"_a.noconvert(),
        "ms"_a.noconvert(), "vs"_a.noconvert(), "learning_rate"_a, "beta_1"_a, "beta_2"_a,
        "epsilon"_a, "step"_a, "weight_decay"_a, adam_doc);
  m.def("adam_update_cpu", &adam_cpu<double>, "params"_a.noconvert(), "grads"_a.noconvert(),
        "ms"_a.noconvert(), "vs"_a.noconvert(), "learning_rate"_a, "beta_1"_a, "beta_2"_a,
        "epsilon"_a, "step"_a, "weight_decay"_a, adam_doc);
  m.def("sgd_update_cpu", &sgd_cpu<float>, "params"_a.noconvert(), "grads"_a.noconvert(),
        "moments"_a.noconvert().none(), "learning_rate"_a, "momentum"_a, "nesterov"_a,
        "weight_decay"_a, sgd_doc);
  m.def("sgd_update_cpu", &sgd_cpu<double>, "params"_a.noconvert(), "grads"_a.noconvert(),
        "moments"_a.noconvert().none(), "learning_rate"_a, "momentum"_a, "nesterov"_a,
        "weight_decay"_a, sgd_doc);
  m.def("adam_update_cuda", &adam_cuda, "params"_a.noconvert(), "grads"_a.noconvert(),
        "ms"_a.noconvert(), "vs"_a.noconvert(), "learning_rate"_a, "beta_1"_a, "beta_2"_a,
        "epsilon"_a, "step"_a, "weight_decay"_a, "stream"_a, adam_doc);
  m.def("sgd_update_cuda", &sgd_cuda, "params"_a.noconvert(), "grads"_a.noconvert(),
        "moments"_a.noconvert().none(), "learning_rate"_a, "momentum"_a, "nesterov"_a,
        "weight_decay"_a, "stream"_a, sgd_doc);
}

}  // namespace fusednn::bindings
