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
#include <type_traits>
#include <utility>
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

void check_step(const char* op, std::int64_t step) {
  if (step < 1) {
    throw nb::value_error((std::string(op) + ": step must be >= 1, got " + std::to_string(step))
                              .c_str());
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
  check_step("adam_update", step);
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
  check_step("adam_update", step);
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

// The pointers of params, grads and each state list (named for errors), checked
// against params; the state lists' pointers in Gathered::ms and ::vs.
template <typename T, typename Device>
Gathered<T> gather_state(const char* op, const TensorList<T, Device>& params,
                         const TensorList<const T, Device>& grads, const char* first_name,
                         const TensorList<T, Device>& first, const char* second_name = nullptr,
                         const TensorList<T, Device>* second = nullptr) {
  check_list(op, "grads", params, grads);
  check_list(op, first_name, params, first);
  if (second) check_list(op, second_name, params, *second);
  Gathered<T> g = gather(params, grads);
  g.ms = pointers(first);
  if (second) g.vs = pointers(*second);
  return g;
}

// Nadam / Adamax / Lion: the CPU kernel for float32 and float64 (Device cpu),
// the CUDA kernel on `stream` for float32 (Device cuda). Nadam returns U_t, the
// momentum-cache product after this step (optimizers.h), for the next call.
template <typename T, typename Device>
double nadam(TensorList<T, Device> params, TensorList<const T, Device> grads,
             TensorList<T, Device> ms, TensorList<T, Device> vs, double learning_rate,
             double beta_1, double beta_2, double epsilon, std::int64_t step,
             double previous_u_product, double weight_decay, std::uintptr_t stream) {
  Gathered<T> g = gather_state("nadam_update", params, grads, "ms", ms, "vs", &vs);
  check_step("nadam_update", step);
  double u_product;
  const NadamCoefficients<double> c = nadam_coefficients(
      learning_rate, beta_1, beta_2, epsilon, step, previous_u_product, weight_decay, &u_product);
  const auto n = static_cast<std::int64_t>(g.sizes.size());
  nb::gil_scoped_release release;
  if constexpr (std::is_same_v<Device, nb::device::cpu>) {
    cpu::nadam_update<T>(g.params.data(), g.grads.data(), g.ms.data(), g.vs.data(),
                         g.sizes.data(), n, c);
  } else {
#if FUSEDNN_WITH_CUDA
    cuda::nadam_update(g.params.data(), g.grads.data(), g.ms.data(), g.vs.data(), g.sizes.data(),
                       n, c, stream);
#else
    no_cuda("nadam_update");
#endif
  }
  return u_product;
}

template <typename T, typename Device>
void adamax(TensorList<T, Device> params, TensorList<const T, Device> grads,
            TensorList<T, Device> ms, TensorList<T, Device> us, double learning_rate,
            double beta_1, double beta_2, double epsilon, std::int64_t step, double weight_decay,
            std::uintptr_t stream) {
  Gathered<T> g = gather_state("adamax_update", params, grads, "ms", ms, "us", &us);
  check_step("adamax_update", step);
  const AdamaxCoefficients<double> c =
      adamax_coefficients(learning_rate, beta_1, beta_2, epsilon, step, weight_decay);
  const auto n = static_cast<std::int64_t>(g.sizes.size());
  nb::gil_scoped_release release;
  if constexpr (std::is_same_v<Device, nb::device::cpu>) {
    cpu::adamax_update<T>(g.params.data(), g.grads.data(), g.ms.data(), g.vs.data(),
                          g.sizes.data(), n, c);
  } else {
#if FUSEDNN_WITH_CUDA
    cuda::adamax_update(g.params.data(), g.grads.data(), g.ms.data(), g.vs.data(),
                        g.sizes.data(), n, c, stream);
#else
    no_cuda("adamax_update");
#endif
  }
}

template <typename T, typename Device>
void lion(TensorList<T, Device> params, TensorList<const T, Device> grads,
          TensorList<T, Device> ms, double learning_rate, double beta_1, double beta_2,
          double weight_decay, std::uintptr_t stream) {
  Gathered<T> g = gather_state("lion_update", params, grads, "ms", ms);
  const LionCoefficients<double> c = lion_coefficients(learning_rate, beta_1, beta_2, weight_decay);
  const auto n = static_cast<std::int64_t>(g.sizes.size());
  nb::gil_scoped_release release;
  if constexpr (std::is_same_v<Device, nb::device::cpu>) {
    cpu::lion_update<T>(g.params.data(), g.grads.data(), g.ms.data(), g.sizes.data(), n, c);
  } else {
#if FUSEDNN_WITH_CUDA
    cuda::lion_update(g.params.data(), g.grads.data(), g.ms.data(), g.sizes.data(), n, c, stream);
#else
    no_cuda("lion_update");
#endif
  }
}

// The CPU entry points take no stream.
template <typename T>
double nadam_cpu(TensorList<T, nb::device::cpu> params, TensorList<const T, nb::device::cpu> grads,
                 TensorList<T, nb::device::cpu> ms, TensorList<T, nb::device::cpu> vs,
                 double learning_rate, double beta_1, double beta_2, double epsilon,
                 std::int64_t step, double previous_u_product, double weight_decay) {
  return nadam<T, nb::device::cpu>(std::move(params), std::move(grads), std::move(ms),
                                   std::move(vs), learning_rate, beta_1, beta_2, epsilon, step,
                                   previous_u_product, weight_decay, 0);
}

template <typename T>
void adamax_cpu(TensorList<T, nb::device::cpu> params, TensorList<const T, nb::device::cpu> grads,
                TensorList<T, nb::device::cpu> ms, TensorList<T, nb::device::cpu> us,
                double learning_rate, double beta_1, double beta_2, double epsilon,
                std::int64_t step, double weight_decay) {
  adamax<T, nb::device::cpu>(std::move(params), std::move(grads), std::move(ms), std::move(us),
                             learning_rate, beta_1, beta_2, epsilon, step, weight_decay, 0);
}

template <typename T>
void lion_cpu(TensorList<T, nb::device::cpu> params, TensorList<const T, nb::device::cpu> grads,
              TensorList<T, nb::device::cpu> ms, double learning_rate, double beta_1,
              double beta_2, double weight_decay) {
  lion<T, nb::device::cpu>(std::move(params), std::move(grads), std::move(ms), learning_rate,
                           beta_1, beta_2, weight_decay, 0);
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

  const char* nadam_doc =
      "Nadam (Keras form) over lists of same-size arrays, updating params, ms, vs in place; "
      "returns the momentum-cache product after this step (pass it as previous_u_product next).";
  const char* adamax_doc =
      "Adamax (Keras form) over lists of same-size arrays, updating params, ms, us in place.";
  const char* lion_doc =
      "Lion (Keras form) over lists of same-size arrays, updating params, ms in place.";
  using Cuda = nb::device::cuda;
  m.def("nadam_update_cpu", &nadam_cpu<float>, "params"_a.noconvert(), "grads"_a.noconvert(),
        "ms"_a.noconvert(), "vs"_a.noconvert(), "learning_rate"_a, "beta_1"_a, "beta_2"_a,
        "epsilon"_a, "step"_a, "previous_u_product"_a, "weight_decay"_a, nadam_doc);
  m.def("nadam_update_cpu", &nadam_cpu<double>, "params"_a.noconvert(), "grads"_a.noconvert(),
        "ms"_a.noconvert(), "vs"_a.noconvert(), "learning_rate"_a, "beta_1"_a, "beta_2"_a,
        "epsilon"_a, "step"_a, "previous_u_product"_a, "weight_decay"_a, nadam_doc);
  m.def("nadam_update_cuda", &nadam<float, Cuda>, "params"_a.noconvert(), "grads"_a.noconvert(),
        "ms"_a.noconvert(), "vs"_a.noconvert(), "learning_rate"_a, "beta_1"_a, "beta_2"_a,
        "epsilon"_a, "step"_a, "previous_u_product"_a, "weight_decay"_a, "stream"_a, nadam_doc);
  m.def("adamax_update_cpu", &adamax_cpu<float>, "params"_a.noconvert(), "grads"_a.noconvert(),
        "ms"_a.noconvert(), "us"_a.noconvert(), "learning_rate"_a, "beta_1"_a, "beta_2"_a,
        "epsilon"_a, "step"_a, "weight_decay"_a, adamax_doc);
  m.def("adamax_update_cpu", &adamax_cpu<double>, "params"_a.noconvert(), "grads"_a.noconvert(),
        "ms"_a.noconvert(), "us"_a.noconvert(), "learning_rate"_a, "beta_1"_a, "beta_2"_a,
        "epsilon"_a, "step"_a, "weight_decay"_a, adamax_doc);
  m.def("adamax_update_cuda", &adamax<float, Cuda>, "params"_a.noconvert(),
        "grads"_a.noconvert(), "ms"_a.noconvert(), "us"_a.noconvert(), "learning_rate"_a,
        "beta_1"_a, "beta_2"_a, "epsilon"_a, "step"_a, "weight_decay"_a, "stream"_a, adamax_doc);
  m.def("lion_update_cpu", &lion_cpu<float>, "params"_a.noconvert(), "grads"_a.noconvert(),
        "ms"_a.noconvert(), "learning_rate"_a, "beta_1"_a, "beta_2"_a, "weight_decay"_a,
        lion_doc);
  m.def("lion_update_cpu", &lion_cpu<double>, "params"_a.noconvert(), "grads"_a.noconvert(),
        "ms"_a.noconvert(), "learning_rate"_a, "beta_1"_a, "beta_2"_a, "weight_decay"_a,
        lion_doc);
  m.def("lion_update_cuda", &lion<float, Cuda>, "params"_a.noconvert(), "grads"_a.noconvert(),
        "ms"_a.noconvert(), "learning_rate"_a, "beta_1"_a, "beta_2"_a, "weight_decay"_a,
        "stream"_a, lion_doc);
}

}  // namespace fusednn::bindings
